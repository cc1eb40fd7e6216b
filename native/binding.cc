// binding.cc - N-API glue (node-addon-api) over the plain C core in src/.
//
// Each exported function validates its arguments on the main thread
// (TypeError / RangeError, thrown synchronously), copies them into an
// AsyncWorker, and returns a Promise.  The worker runs the C core on the
// libuv thread pool and settles the promise on the main thread: resolved
// with the result, or rejected with a Node-style errno Error
// ({ errno: -N, code, syscall, path? }, message "CODE: description, syscall").
//
// Built with NAPI_DISABLE_CPP_EXCEPTIONS: errors are thrown with
// ThrowAsJavaScriptException() and the function returns right after.

#include <napi.h>
#include <uv.h>  // uv_err_name_r / uv_strerror_r: Node's own errno names and texts

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <dirent.h>

#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "src/atops.h"
#include "src/atpath.h"
#include "fuse-native/src/posix_rules.h"  // the rules the FUSE bridge applies too
#include "fuse-native/src/names.h"  // names as bytes <-> strings, as the FUSE bridge maps them
#include "src/blockcopy.h"
#include "src/digest.h"
#include "src/dirents.h"
#include "src/scandir.h"
#include "src/sysops.h"
#include "src/notify.h"
#include "src/xattr.h"

namespace {

constexpr double kMaxSafeInteger = 9007199254740991.0;  // 2^53 - 1

// ---------------------------------------------------------------------------
// Names

// The bytes of a name, path, symlink target or xattr name (names.h: the
// characters U+F780-U+F7FF are the bytes 0x80-0xFF that were not UTF-8).
std::string NameBytes(const Napi::String& s) {
  std::u16string u = s.Utf16Value();
  std::string out(3 * u.size(), '\0');
  size_t n = sn_name_encode(reinterpret_cast<const uint16_t*>(u.data()), u.size(),
                            reinterpret_cast<unsigned char*>(&out[0]));
  out.resize(n);
  return out;
}

// The string of a name's (path's, target's) bytes, as the FUSE bridge makes it.
Napi::String NameString(Napi::Env env, const char* s, size_t len) {
  napi_value v;
  if (sn_js_name(env, s, len, &v) != napi_ok) return Napi::String::New(env, "");
  return Napi::String(env, v);
}

Napi::String NameString(Napi::Env env, const std::string& s) {
  return NameString(env, s.data(), s.size());
}

// ---------------------------------------------------------------------------
// Errors

// A Node-style system error from an sn_err filled in by the C core.
Napi::Error MakeErrnoError(Napi::Env env, const sn_err& e,
                           const std::string& path) {
  char name[64];
  char desc[256];
  // libuv error codes are negated errno values on Unix.
  uv_err_name_r(-e.code, name, sizeof name);
  uv_strerror_r(-e.code, desc, sizeof desc);
  const char* syscall = e.syscall != nullptr ? e.syscall : "unknown";

  std::string msg = std::string(name) + ": " + desc + ", " + syscall;
  if (!path.empty()) msg += " '" + path + "'";

  Napi::Error err = Napi::Error::New(env, msg);
  Napi::Object obj = err.Value();
  obj.Set("errno", Napi::Number::New(env, -e.code));
  obj.Set("code", Napi::String::New(env, name));
  obj.Set("syscall", Napi::String::New(env, syscall));
  if (!path.empty()) obj.Set("path", NameString(env, path));
  return err;
}

std::string FormatNumber(double d) {
  char buf[64];
  if (std::isfinite(d) && std::trunc(d) == d && std::fabs(d) <= kMaxSafeInteger)
    std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(d));
  else
    std::snprintf(buf, sizeof buf, "%.17g", d);
  return buf;
}

void ThrowTypeError(Napi::Env env, const char* code, const std::string& msg) {
  Napi::Error err = Napi::TypeError::New(env, msg);
  err.Value().Set("code", Napi::String::New(env, code));
  err.ThrowAsJavaScriptException();
}

void ThrowRangeError(Napi::Env env, const std::string& msg) {
  Napi::Error err = Napi::RangeError::New(env, msg);
  err.Value().Set("code", Napi::String::New(env, "ERR_OUT_OF_RANGE"));
  err.ThrowAsJavaScriptException();
}

// ---------------------------------------------------------------------------
// Argument validation.  Each returns false after throwing.

bool CheckInteger(Napi::Env env, Napi::Value v, const char* name, double min,
                  double max, double* out) {
  if (!v.IsNumber()) {
    ThrowTypeError(env, "ERR_INVALID_ARG_TYPE",
                   std::string("The \"") + name +
                       "\" argument must be of type number");
    return false;
  }
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::trunc(d) != d) {
    ThrowRangeError(env, std::string("The value of \"") + name +
                             "\" is out of range. It must be an integer. "
                             "Received " + FormatNumber(d));
    return false;
  }
  if (d < min || d > max) {
    ThrowRangeError(env, std::string("The value of \"") + name +
                             "\" is out of range. It must be >= " +
                             FormatNumber(min) + " && <= " + FormatNumber(max) +
                             ". Received " + FormatNumber(d));
    return false;
  }
  *out = d;
  return true;
}

bool GetFd(const Napi::CallbackInfo& info, size_t i, const char* name,
           int* out) {
  double d;
  if (!CheckInteger(info.Env(), info[i], name, 0, INT_MAX, &d)) return false;
  *out = static_cast<int>(d);
  return true;
}

// The optional directory descriptor a path is relative to (the calls' last
// argument): undefined is AT_FDCWD (the working directory, or an absolute path).
bool GetAt(const Napi::CallbackInfo& info, size_t i, int* out) {
  if (info[i].IsUndefined()) {
    *out = AT_FDCWD;
    return true;
  }
  if (info[i].IsNumber() && info[i].As<Napi::Number>().DoubleValue() == AT_FDCWD) {
    *out = AT_FDCWD;
    return true;
  }
  return GetFd(info, i, "dirfd", out);
}

// Offsets and lengths: 0 .. 2^53-1.
bool GetSize(const Napi::CallbackInfo& info, size_t i, const char* name,
             uint64_t* out) {
  double d;
  if (!CheckInteger(info.Env(), info[i], name, 0, kMaxSafeInteger, &d))
    return false;
  *out = static_cast<uint64_t>(d);
  return true;
}

bool GetUint32(const Napi::CallbackInfo& info, size_t i, const char* name,
               uint32_t* out) {
  double d;
  if (!CheckInteger(info.Env(), info[i], name, 0, 4294967295.0, &d))
    return false;
  *out = static_cast<uint32_t>(d);
  return true;
}

// A string without NUL bytes (paths and xattr names go to C as char*, as bytes: NameBytes).
bool GetString(const Napi::CallbackInfo& info, size_t i, const char* name,
               std::string* out) {
  Napi::Env env = info.Env();
  if (!info[i].IsString()) {
    ThrowTypeError(env, "ERR_INVALID_ARG_TYPE",
                   std::string("The \"") + name +
                       "\" argument must be of type string");
    return false;
  }
  *out = NameBytes(info[i].As<Napi::String>());
  if (out->find('\0') != std::string::npos) {
    ThrowTypeError(env, "ERR_INVALID_ARG_VALUE",
                   std::string("The argument '") + name +
                       "' must be a string without null bytes");
    return false;
  }
  return true;
}

// Optional string from a fixed set; undefined -> index 0 (the default).
bool GetChoice(const Napi::CallbackInfo& info, size_t i, const char* name,
               const std::vector<const char*>& choices, int* out) {
  Napi::Env env = info.Env();
  Napi::Value v = info[i];
  if (v.IsUndefined()) {
    *out = 0;
    return true;
  }
  if (v.IsString()) {
    std::string s = v.As<Napi::String>().Utf8Value();
    for (size_t k = 0; k < choices.size(); k++) {
      if (s == choices[k]) {
        *out = static_cast<int>(k);
        return true;
      }
    }
  }
  std::string list;
  for (size_t k = 0; k < choices.size(); k++)
    list += std::string(k ? ", '" : "'") + choices[k] + "'";
  ThrowTypeError(env, "ERR_INVALID_ARG_VALUE",
                 std::string("The argument '") + name + "' must be one of " +
                     list);
  return false;
}

// TimeSpec: { sec, nsec } | 'now' | 'omit'.
bool GetTimeSpec(const Napi::CallbackInfo& info, size_t i, const char* name,
                 struct timespec* ts) {
  Napi::Env env = info.Env();
  Napi::Value v = info[i];
  if (v.IsString()) {
    std::string s = v.As<Napi::String>().Utf8Value();
    if (s == "now" || s == "omit") {
      ts->tv_sec = 0;
      ts->tv_nsec = s == "now" ? UTIME_NOW : UTIME_OMIT;
      return true;
    }
  } else if (v.IsObject()) {
    Napi::Object o = v.As<Napi::Object>();
    Napi::Value sec = o.Get("sec");
    if (env.IsExceptionPending()) return false;  // a throwing getter
    Napi::Value nsec = o.Get("nsec");
    if (env.IsExceptionPending()) return false;
    std::string base(name);
    double s, ns;
    if (!CheckInteger(env, sec, (base + ".sec").c_str(), -kMaxSafeInteger,
                      kMaxSafeInteger, &s))
      return false;
    if (!CheckInteger(env, nsec, (base + ".nsec").c_str(), 0, 999999999, &ns))
      return false;
    ts->tv_sec = static_cast<time_t>(s);
    ts->tv_nsec = static_cast<long>(ns);
    return true;
  }
  ThrowTypeError(env, "ERR_INVALID_ARG_TYPE",
                 std::string("The \"") + name +
                     "\" argument must be { sec, nsec }, 'now' or 'omit'");
  return false;
}

// ---------------------------------------------------------------------------
// Workers

// Base: owns the Deferred and the error slot.  Subclasses implement
// Execute() (thread pool, no JS) and Result() (main thread).
class PromiseWorker : public Napi::AsyncWorker {
 public:
  PromiseWorker(Napi::Env env, const char* name)
      : Napi::AsyncWorker(env, name),
        deferred_(Napi::Promise::Deferred::New(env)) {}

  // The directory a relative path is relative to (AT_FDCWD: the working
  // directory), for the calls that take a path.
  PromiseWorker* At(int at) {
    at_ = at;
    return this;
  }

  // Queue the work and hand out the promise.  The worker deletes itself
  // after settling it (AsyncWorker's default), running our destructors.
  Napi::Value Start() {
    Napi::Promise promise = deferred_.Promise();
    Queue();
    return promise;
  }

 protected:
  virtual Napi::Value Result(Napi::Env env) { return env.Undefined(); }

  void OnOK() override {
    Napi::Env env = Env();
    if (err_.code != 0)
      deferred_.Reject(MakeErrnoError(env, err_, path_).Value());
    else
      deferred_.Resolve(Result(env));
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

  Napi::Promise::Deferred deferred_;
  sn_err err_ = {0, nullptr};
  std::string path_;  // put into the error when non-empty
  int at_ = AT_FDCWD;
};

class CopyRangeWorker : public PromiseWorker {
 public:
  CopyRangeWorker(Napi::Env env, int fd_in, uint64_t off_in, int fd_out,
                  uint64_t off_out, uint64_t len, sn_copy_method method)
      : PromiseWorker(env, "strata:copyRange"), fd_in_(fd_in), off_in_(off_in),
        fd_out_(fd_out), off_out_(off_out), len_(len), method_(method) {}

  void Execute() override {
    sn_copy_range(fd_in_, off_in_, fd_out_, off_out_, len_, method_, &copied_,
                  &err_);
  }
  Napi::Value Result(Napi::Env env) override {
    return Napi::Number::New(env, static_cast<double>(copied_));
  }

 private:
  int fd_in_;
  uint64_t off_in_;
  int fd_out_;
  uint64_t off_out_;
  uint64_t len_;
  sn_copy_method method_;
  uint64_t copied_ = 0;
};

class CloneFileWorker : public PromiseWorker {
 public:
  CloneFileWorker(Napi::Env env, int fd_in, int fd_out, sn_clone_method method)
      : PromiseWorker(env, "strata:cloneFile"), fd_in_(fd_in), fd_out_(fd_out),
        method_(method) {}

  void Execute() override {
    sn_clone_file(fd_in_, fd_out_, method_, &reflinked_, &err_);
  }
  Napi::Value Result(Napi::Env env) override {
    return Napi::String::New(env, reflinked_ ? "reflink" : "copy");
  }

 private:
  int fd_in_;
  int fd_out_;
  sn_clone_method method_;
  int reflinked_ = 0;
};

// Extents as JS sees them: [{ offset, length }, ...].
static Napi::Array ExtentsArray(Napi::Env env, const sn_extent* ext, size_t count) {
  Napi::Array arr = Napi::Array::New(env, count);
  for (size_t i = 0; i < count; i++) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("offset", Napi::Number::New(env, static_cast<double>(ext[i].offset)));
    o.Set("length", Napi::Number::New(env, static_cast<double>(ext[i].length)));
    arr.Set(static_cast<uint32_t>(i), o);
  }
  return arr;
}

class ListExtentsWorker : public PromiseWorker {
 public:
  ListExtentsWorker(Napi::Env env, int fd)
      : PromiseWorker(env, "strata:listExtents"), fd_(fd) {}
  ~ListExtentsWorker() override { std::free(ext_); }

  void Execute() override { sn_list_extents(fd_, &ext_, &count_, &err_); }
  Napi::Value Result(Napi::Env env) override {
    return ExtentsArray(env, ext_, count_);
  }

 private:
  int fd_;
  sn_extent* ext_ = nullptr;
  size_t count_ = 0;
};

class ReadFileQuietWorker : public PromiseWorker {
 public:
  ReadFileQuietWorker(Napi::Env env, std::string path, uint64_t max)
      : PromiseWorker(env, "strata:readFileQuiet"), max_(max) {
    path_ = std::move(path);
  }
  ~ReadFileQuietWorker() override {
    std::free(ext_);
    std::free(data_);
  }

  void Execute() override {
    sn_read_file_quiet(at_, path_.c_str(), max_, &ext_, &count_, &data_, &len_, &err_);
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("extents", ExtentsArray(env, ext_, count_));
    if (data_ != nullptr && len_ > 0) {
      // The Buffer takes the malloc'd bytes (no copy) and frees them when collected.
      char* owned = data_;
      data_ = nullptr;
      o.Set("data", Napi::Buffer<char>::New(env, owned, len_, [](Napi::Env, char* p) { std::free(p); }));
    } else {
      o.Set("data", Napi::Buffer<char>::New(env, 0));
    }
    return o;
  }

 private:
  uint64_t max_;
  sn_extent* ext_ = nullptr;
  size_t count_ = 0;
  char* data_ = nullptr;
  size_t len_ = 0;
};

class UtimensWorker : public PromiseWorker {
 public:
  // fd >= 0: futimens(fd); otherwise utimensat(AT_FDCWD, path).
  UtimensWorker(Napi::Env env, std::string path, int fd,
                const struct timespec ts[2], bool no_follow)
      : PromiseWorker(env, fd >= 0 ? "strata:futimens" : "strata:utimens"),
        fd_(fd), no_follow_(no_follow) {
    path_ = std::move(path);
    ts_[0] = ts[0];
    ts_[1] = ts[1];
  }

  void Execute() override {
    if (fd_ >= 0)
      sn_futimens(fd_, ts_, &err_);
    else
      sn_utimens(at_, path_.c_str(), ts_, no_follow_ ? 1 : 0, &err_);
  }

 private:
  int fd_;
  bool no_follow_;
  struct timespec ts_[2];
};

// sha256Blocks(data, lengths): the sha256 of each of the consecutive blocks
// of `data` (lengths[i] bytes each), on the thread pool; resolves with one
// Buffer of 32 bytes per block, one after the other. `data` is kept alive
// (and must not change) until the promise settles.
class Sha256BlocksWorker : public PromiseWorker {
 public:
  Sha256BlocksWorker(Napi::Env env, Napi::Buffer<uint8_t> data, std::vector<size_t> lens)
      : PromiseWorker(env, "strata:sha256Blocks"), data_(data.Data()), lens_(std::move(lens)),
        out_(32 * lens_.size()) {
    keep_ = Napi::Persistent(data);
  }

  void Execute() override {
    if (sn_sha256_blocks(data_, lens_.data(), lens_.size(), out_.data()) != 0)
      SetError("sha256Blocks: OpenSSL failed");
  }
  Napi::Value Result(Napi::Env env) override {
    return Napi::Buffer<uint8_t>::Copy(env, out_.data(), out_.size());
  }

 private:
  Napi::Reference<Napi::Buffer<uint8_t>> keep_;
  const uint8_t* data_;
  std::vector<size_t> lens_;
  std::vector<uint8_t> out_;
};

class MknodWorker : public PromiseWorker {
 public:
  MknodWorker(Napi::Env env, std::string path, uint32_t mode, uint64_t dev)
      : PromiseWorker(env, "strata:mknod"), mode_(mode), dev_(dev) {
    path_ = std::move(path);
  }
  void Execute() override { sn_mknod(at_, path_.c_str(), mode_, dev_, &err_); }

 private:
  uint32_t mode_;
  uint64_t dev_;
};

class FallocateWorker : public PromiseWorker {
 public:
  FallocateWorker(Napi::Env env, int fd, int mode, uint64_t offset,
                  uint64_t len)
      : PromiseWorker(env, "strata:fallocate"), fd_(fd), mode_(mode),
        offset_(offset), len_(len) {}
  void Execute() override { sn_fallocate(fd_, mode_, offset_, len_, &err_); }

 private:
  int fd_;
  int mode_;
  uint64_t offset_;
  uint64_t len_;
};

// appendWrite(fd, data, length): a write of a program's O_APPEND file
// (posix_rules.h, sr_append, as the FUSE bridge's own writes do), on the
// thread pool; resolves with [written, offset]: where the bytes landed.
class AppendWriteWorker : public PromiseWorker {
 public:
  AppendWriteWorker(Napi::Env env, int fd, Napi::Buffer<uint8_t> data, size_t len)
      : PromiseWorker(env, "strata:appendWrite"), fd_(fd), data_(data.Data()), len_(len) {
    keep_ = Napi::Persistent(data);
  }

  void Execute() override {
    off_t landed = 0;
    ssize_t n = sr_append(fd_, data_, len_, &landed);
    if (n < 0) {
      SN_FAIL(&err_, errno, "pwritev2");
      return;
    }
    written_ = static_cast<size_t>(n);
    landed_ = landed;
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Array out = Napi::Array::New(env, 2);
    out.Set(0u, Napi::Number::New(env, static_cast<double>(written_)));
    out.Set(1u, Napi::Number::New(env, static_cast<double>(landed_)));
    return out;
  }

 private:
  Napi::Reference<Napi::Buffer<uint8_t>> keep_;
  int fd_;
  const uint8_t* data_;
  size_t len_;
  size_t written_ = 0;
  off_t landed_ = 0;
};

class NotifyWorker : public PromiseWorker {
 public:
  NotifyWorker(Napi::Env env, std::string socket, std::string msg)
      : PromiseWorker(env, "strata:sdNotify"), msg_(std::move(msg)) {
    path_ = std::move(socket);
  }
  void Execute() override {
    sn_notify(path_.c_str(), msg_.data(), msg_.size(), &err_);
  }

 private:
  std::string msg_;
};

class GetxattrWorker : public PromiseWorker {
 public:
  GetxattrWorker(Napi::Env env, std::string path, std::string name)
      : PromiseWorker(env, "strata:getxattr"), name_(std::move(name)) {
    path_ = std::move(path);
  }
  ~GetxattrWorker() override { std::free(buf_); }

  void Execute() override {
    sn_getxattr(at_, path_.c_str(), name_.c_str(), &buf_, &len_, &err_);
  }
  Napi::Value Result(Napi::Env env) override {
    // Copy so the JS Buffer owns ordinary memory; ours is freed in the dtor.
    return Napi::Buffer<char>::Copy(env, buf_, len_);
  }

 private:
  std::string name_;
  char* buf_ = nullptr;
  size_t len_ = 0;
};

class SetxattrWorker : public PromiseWorker {
 public:
  SetxattrWorker(Napi::Env env, std::string path, std::string name,
                 std::vector<uint8_t> value, int flags)
      : PromiseWorker(env, "strata:setxattr"), name_(std::move(name)),
        value_(std::move(value)), flags_(flags) {
    path_ = std::move(path);
  }
  void Execute() override {
    sn_setxattr(at_, path_.c_str(), name_.c_str(), value_.data(), value_.size(),
                flags_, &err_);
  }

 private:
  std::string name_;
  std::vector<uint8_t> value_;  // private copy: JS may change its buffer
  int flags_;
};

// The xattr names and values of a call as the C core takes them: arrays of
// pointers into the worker's own copies (valid while the worker lives).
struct XattrArrays {
  std::vector<const char*> names;
  std::vector<const void*> values;
  std::vector<size_t> lens;
  XattrArrays(const std::vector<std::string>& n, const std::vector<std::vector<uint8_t>>& v) {
    for (size_t i = 0; i < n.size(); i++) {
      names.push_back(n[i].c_str());
      values.push_back(v[i].data());
      lens.push_back(v[i].size());
    }
  }
};

class PrepareObjectWorker : public PromiseWorker {
 public:
  PrepareObjectWorker(Napi::Env env, std::string path, int create,
                      uint32_t mode, uint64_t size,
                      std::vector<std::string> names,
                      std::vector<std::vector<uint8_t>> values, int64_t uid,
                      int64_t gid, int64_t chmod_mode, bool drop_acls)
      : PromiseWorker(env, "strata:prepareObject"), create_(create),
        mode_(mode), size_(size), names_(std::move(names)),
        values_(std::move(values)), uid_(uid), gid_(gid),
        chmod_mode_(chmod_mode), drop_acls_(drop_acls) {
    path_ = std::move(path);
  }
  void Execute() override {
    XattrArrays xa(names_, values_);
    sn_prepare_object(at_, path_.c_str(), create_, mode_, size_, xa.names.data(),
                      xa.values.data(), xa.lens.data(), names_.size(), uid_, gid_,
                      chmod_mode_, drop_acls_ ? 1 : 0, &err_);
  }

 private:
  int create_;
  uint32_t mode_;
  uint64_t size_;
  std::vector<std::string> names_;
  std::vector<std::vector<uint8_t>> values_;  // private copies
  int64_t uid_;
  int64_t gid_;
  int64_t chmod_mode_;
  bool drop_acls_;
};

class CloneToWorker : public PromiseWorker {
 public:
  CloneToWorker(Napi::Env env, std::string src, int dst_at, std::string dst, uint32_t mode)
      : PromiseWorker(env, "strata:cloneTo"), src_(std::move(src)),
        dst_at_(dst_at), dst_(std::move(dst)), mode_(mode) {}
  void Execute() override {
    sn_clone_to(at_, src_.c_str(), dst_at_, dst_.c_str(), mode_, &res_, &err_);
    path_ = res_.found && res_.is_file ? dst_ : src_;
  }
  Napi::Value Result(Napi::Env env) override {
    if (!res_.found) return env.Null();
    Napi::Object o = Napi::Object::New(env);
    o.Set("ino", Napi::BigInt::New(env, res_.ino));
    o.Set("isFile", Napi::Boolean::New(env, res_.is_file != 0));
    if (res_.is_file) {
      o.Set("size", Napi::Number::New(env, static_cast<double>(res_.size)));
      o.Set("how", Napi::String::New(env, res_.reflinked ? "reflink" : "copy"));
    }
    return o;
  }

 private:
  std::string src_;
  int dst_at_;
  std::string dst_;
  uint32_t mode_;
  sn_clone_to_result res_ = {0, 0, 0, 0, 0};
};

class FinishFileWorker : public PromiseWorker {
 public:
  FinishFileWorker(Napi::Env env, std::string tmp, bool create, int64_t size,
                   int log_fd, std::vector<uint64_t> ranges,
                   std::vector<std::string> names,
                   std::vector<std::vector<uint8_t>> values, int64_t uid,
                   int64_t gid, int64_t chmod_mode, struct timespec atime,
                   struct timespec mtime, std::string final, bool rename,
                   Napi::Value data, bool drop_acls)
      : PromiseWorker(env, "strata:finishFile"), create_(create), size_(size),
        log_fd_(log_fd), ranges_(std::move(ranges)), names_(std::move(names)),
        values_(std::move(values)), uid_(uid), gid_(gid),
        chmod_mode_(chmod_mode), final_(std::move(final)), rename_(rename),
        drop_acls_(drop_acls) {
    path_ = std::move(tmp);
    ts_[0] = atime;
    ts_[1] = mtime;
    if (data.IsBuffer()) {
      // Kept alive (not copied) until the worker is done.
      Napi::Buffer<uint8_t> b = data.As<Napi::Buffer<uint8_t>>();
      data_ = b.Data();
      data_len_ = b.Length();
      keep_ = Napi::Persistent(b);
    }
  }
  void Execute() override {
    XattrArrays xa(names_, values_);
    sn_finish_file(at_, path_.c_str(), create_ ? 1 : 0, size_, log_fd_,
                   ranges_.data(), ranges_.size() / 3, xa.names.data(),
                   xa.values.data(), xa.lens.data(), names_.size(), uid_, gid_,
                   chmod_mode_, ts_, rename_ ? final_.c_str() : nullptr,
                   data_, data_len_, drop_acls_ ? 1 : 0, &log_bytes_, &err_);
  }
  Napi::Value Result(Napi::Env env) override {
    return Napi::Number::New(env, static_cast<double>(log_bytes_));
  }

 private:
  bool create_;
  int64_t size_;
  int log_fd_;
  std::vector<uint64_t> ranges_;
  std::vector<std::string> names_;
  std::vector<std::vector<uint8_t>> values_;  // private copies
  int64_t uid_, gid_, chmod_mode_;
  struct timespec ts_[2];
  std::string final_;
  bool rename_;
  bool drop_acls_;
  const uint8_t* data_ = nullptr;
  size_t data_len_ = 0;
  Napi::Reference<Napi::Buffer<uint8_t>> keep_;
  uint64_t log_bytes_ = 0;
};

// All extended attributes of one object: llistxattr, then lgetxattr of each
// name (a name removed in between is left out), in one thread-pool job.
class ReadXattrsWorker : public PromiseWorker {
 public:
  ReadXattrsWorker(Napi::Env env, std::string path)
      : PromiseWorker(env, "strata:readXattrs") {
    path_ = std::move(path);
  }
  void Execute() override {
    char* list = nullptr;
    size_t len = 0;
    if (sn_listxattr(at_, path_.c_str(), &list, &len, &err_) < 0) return;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
      if (i < len && list[i] != '\0') continue;
      if (i > start) {
        std::string name(list + start, i - start);
        char* buf = nullptr;
        size_t n = 0;
        sn_err e = {0, nullptr};
        if (sn_getxattr(at_, path_.c_str(), name.c_str(), &buf, &n, &e) < 0) {
          if (e.code != ENODATA) {
            err_ = e;
            break;
          }
        } else {
          names_.push_back(std::move(name));
          values_.emplace_back(buf, buf + n);
          std::free(buf);
        }
      }
      start = i + 1;
    }
    std::free(list);
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Array arr = Napi::Array::New(env, names_.size());
    for (size_t i = 0; i < names_.size(); i++) {
      Napi::Array pair = Napi::Array::New(env, 2);
      pair.Set(0u, NameString(env, names_[i]));
      pair.Set(1u, Napi::Buffer<char>::Copy(env, values_[i].data(), values_[i].size()));
      arr.Set(static_cast<uint32_t>(i), pair);
    }
    return arr;
  }

 private:
  std::vector<std::string> names_;
  std::vector<std::vector<char>> values_;
};

class ListxattrWorker : public PromiseWorker {
 public:
  ListxattrWorker(Napi::Env env, std::string path)
      : PromiseWorker(env, "strata:listxattr") {
    path_ = std::move(path);
  }
  ~ListxattrWorker() override { std::free(buf_); }

  void Execute() override { sn_listxattr(at_, path_.c_str(), &buf_, &len_, &err_); }
  Napi::Value Result(Napi::Env env) override {
    // The kernel's list is "name\0name\0...".
    Napi::Array arr = Napi::Array::New(env);
    uint32_t n = 0;
    size_t start = 0;
    for (size_t i = 0; i < len_; i++) {
      if (buf_[i] != '\0') continue;
      if (i > start)
        arr.Set(n++, NameString(env, buf_ + start, i - start));
      start = i + 1;
    }
    if (start < len_)  // unterminated tail (should not happen)
      arr.Set(n++, NameString(env, buf_ + start, len_ - start));
    return arr;
  }

 private:
  char* buf_ = nullptr;
  size_t len_ = 0;
};

class RemovexattrWorker : public PromiseWorker {
 public:
  RemovexattrWorker(Napi::Env env, std::string path, std::string name)
      : PromiseWorker(env, "strata:removexattr"), name_(std::move(name)) {
    path_ = std::move(path);
  }
  void Execute() override {
    sn_removexattr(at_, path_.c_str(), name_.c_str(), &err_);
  }

 private:
  std::string name_;
};

class ReaddirWorker : public PromiseWorker {
 public:
  ReaddirWorker(Napi::Env env, std::string path)
      : PromiseWorker(env, "strata:readdirIno") {
    path_ = std::move(path);
  }
  ~ReaddirWorker() override { sn_dirents_free(ents_, count_); }

  void Execute() override { sn_readdir(at_, path_.c_str(), &ents_, &count_, &err_); }
  Napi::Value Result(Napi::Env env) override {
    Napi::Array arr = Napi::Array::New(env, count_);
    for (size_t i = 0; i < count_; i++) {
      Napi::Object o = Napi::Object::New(env);
      // Names are bytes: names.h maps the ones that are not UTF-8.
      o.Set("name", NameString(env, ents_[i].name, std::strlen(ents_[i].name)));
      o.Set("ino", Napi::BigInt::New(env, ents_[i].ino));
      o.Set("type", Napi::Number::New(env, ents_[i].type));
      arr.Set(static_cast<uint32_t>(i), o);
    }
    return arr;
  }

 private:
  sn_dirent* ents_ = nullptr;
  size_t count_ = 0;
};

// Nanoseconds since the epoch of `t` as a BigInt: seconds * 1e9 overflows int64
// past 2262-04-11, and ext4 keeps times up to 2446 (touch -d 2500 gives its
// largest); verify read such a file's mtime as a time in 1861.
static Napi::BigInt NsBigInt(Napi::Env env, const struct timespec& t) {
  __int128 ns = static_cast<__int128>(t.tv_sec) * 1000000000 + t.tv_nsec;
  int negative = ns < 0 ? 1 : 0;
  unsigned __int128 mag = negative ? -static_cast<unsigned __int128>(ns) : static_cast<unsigned __int128>(ns);
  const uint64_t words[2] = {static_cast<uint64_t>(mag), static_cast<uint64_t>(mag >> 64)};
  return Napi::BigInt::New(env, negative, 2, words);
}

// scanDir(path, withXattrs): a directory's entries with their lstat and
// extended attributes, in one thread-pool job (src/scandir.c).
class ScanDirWorker : public PromiseWorker {
 public:
  ScanDirWorker(Napi::Env env, std::string path, bool with_xattrs)
      : PromiseWorker(env, "strata:scanDir"), with_xattrs_(with_xattrs) {
    path_ = std::move(path);
  }
  ~ScanDirWorker() override { sn_scan_free(ents_, count_); }

  void Execute() override { sn_scandir(at_, path_.c_str(), with_xattrs_ ? 1 : 0, &ents_, &count_, &err_); }
  Napi::Value Result(Napi::Env env) override {
    Napi::Array arr = Napi::Array::New(env, count_);
    for (size_t i = 0; i < count_; i++) {
      const sn_scan_entry& e = ents_[i];
      const struct stat& st = e.st;
      Napi::Object s = Napi::Object::New(env);
      s.Set("dev", Napi::BigInt::New(env, static_cast<uint64_t>(st.st_dev)));
      s.Set("ino", Napi::BigInt::New(env, static_cast<uint64_t>(st.st_ino)));
      s.Set("mode", Napi::BigInt::New(env, static_cast<uint64_t>(st.st_mode)));
      s.Set("nlink", Napi::BigInt::New(env, static_cast<uint64_t>(st.st_nlink)));
      s.Set("uid", Napi::BigInt::New(env, static_cast<uint64_t>(st.st_uid)));
      s.Set("gid", Napi::BigInt::New(env, static_cast<uint64_t>(st.st_gid)));
      s.Set("rdev", Napi::BigInt::New(env, static_cast<uint64_t>(st.st_rdev)));
      s.Set("size", Napi::BigInt::New(env, static_cast<int64_t>(st.st_size)));
      s.Set("blocks", Napi::BigInt::New(env, static_cast<int64_t>(st.st_blocks)));
      s.Set("atimeNs", NsBigInt(env, st.st_atim));
      s.Set("mtimeNs", NsBigInt(env, st.st_mtim));
      s.Set("ctimeNs", NsBigInt(env, st.st_ctim));
      Napi::Array xs = Napi::Array::New(env, e.nxattrs);
      for (size_t k = 0; k < e.nxattrs; k++) {
        Napi::Array pair = Napi::Array::New(env, 2);
        pair.Set(0u, NameString(env, e.xattrs[k].name, std::strlen(e.xattrs[k].name)));
        pair.Set(1u, Napi::Buffer<char>::Copy(env, e.xattrs[k].value, e.xattrs[k].len));
        xs.Set(static_cast<uint32_t>(k), pair);
      }
      Napi::Object o = Napi::Object::New(env);
      // Names are bytes: names.h maps the ones that are not UTF-8.
      o.Set("name", NameString(env, e.name, std::strlen(e.name)));
      o.Set("st", s);
      o.Set("xattrs", xs);
      arr.Set(static_cast<uint32_t>(i), o);
    }
    return arr;
  }

 private:
  bool with_xattrs_;
  sn_scan_entry* ents_ = nullptr;
  size_t count_ = 0;
};

// ---------------------------------------------------------------------------
// Exported functions

// copyRange(fdIn, offIn, fdOut, offOut, length, method?)
Napi::Value CopyRange(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd_in, fd_out, method;
  uint64_t off_in, off_out, len;
  if (!GetFd(info, 0, "fdIn", &fd_in) || !GetSize(info, 1, "offIn", &off_in) ||
      !GetFd(info, 2, "fdOut", &fd_out) ||
      !GetSize(info, 3, "offOut", &off_out) ||
      !GetSize(info, 4, "length", &len) ||
      !GetChoice(info, 5, "method", {"auto", "copy_file_range", "readwrite"},
                 &method))
    return env.Undefined();
  // GetChoice index order matches sn_copy_method.
  auto* w = new CopyRangeWorker(env, fd_in, off_in, fd_out, off_out, len,
                                static_cast<sn_copy_method>(method));
  return w->Start();
}

// cloneFile(fdIn, fdOut, method?)
Napi::Value CloneFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd_in, fd_out, method;
  if (!GetFd(info, 0, "fdIn", &fd_in) || !GetFd(info, 1, "fdOut", &fd_out) ||
      !GetChoice(info, 2, "method", {"auto", "reflink", "copy"}, &method))
    return env.Undefined();
  // GetChoice index order matches sn_clone_method.
  auto* w = new CloneFileWorker(env, fd_in, fd_out,
                                static_cast<sn_clone_method>(method));
  return w->Start();
}

// listExtents(fd)
Napi::Value ListExtents(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!GetFd(info, 0, "fd", &fd)) return env.Undefined();
  return (new ListExtentsWorker(env, fd))->Start();
}

// readFileQuiet(path, maxBytes)
Napi::Value ReadFileQuiet(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  uint64_t max;
  if (!GetString(info, 0, "path", &path) || !GetSize(info, 1, "maxBytes", &max))
    return env.Undefined();
  if (max > (64u << 20)) {
    Napi::RangeError::New(env, "readFileQuiet: maxBytes is at most 64 MiB (read larger files in pieces)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int at;
  if (!GetAt(info, 2, &at)) return env.Undefined();
  return (new ReadFileQuietWorker(env, std::move(path), max))->At(at)->Start();
}

// utimens(path, atime, mtime, noFollow?)
Napi::Value Utimens(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  struct timespec ts[2];
  if (!GetString(info, 0, "path", &path) ||
      !GetTimeSpec(info, 1, "atime", &ts[0]) ||
      !GetTimeSpec(info, 2, "mtime", &ts[1]))
    return env.Undefined();
  bool no_follow = info[3].ToBoolean().Value();
  int at;
  if (!GetAt(info, 4, &at)) return env.Undefined();
  return (new UtimensWorker(env, std::move(path), -1, ts, no_follow))->At(at)->Start();
}

// futimens(fd, atime, mtime)
Napi::Value Futimens(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  struct timespec ts[2];
  if (!GetFd(info, 0, "fd", &fd) || !GetTimeSpec(info, 1, "atime", &ts[0]) ||
      !GetTimeSpec(info, 2, "mtime", &ts[1]))
    return env.Undefined();
  return (new UtimensWorker(env, std::string(), fd, ts, false))->Start();
}

// mknod(path, mode, dev)
Napi::Value Mknod(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  uint32_t mode;
  uint64_t dev;
  if (!GetString(info, 0, "path", &path) || !GetUint32(info, 1, "mode", &mode) ||
      !GetSize(info, 2, "dev", &dev))
    return env.Undefined();
  int at;
  if (!GetAt(info, 3, &at)) return env.Undefined();
  return (new MknodWorker(env, std::move(path), mode, dev))->At(at)->Start();
}

// fallocate(fd, mode, offset, length)
Napi::Value Fallocate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  uint32_t mode;
  uint64_t offset, len;
  if (!GetFd(info, 0, "fd", &fd) || !GetUint32(info, 1, "mode", &mode) ||
      !GetSize(info, 2, "offset", &offset) || !GetSize(info, 3, "length", &len))
    return env.Undefined();
  return (new FallocateWorker(env, fd, static_cast<int>(mode), offset, len))
      ->Start();
}

// appendWrite(fd, data, length)
Napi::Value AppendWrite(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  uint64_t len;
  if (!GetFd(info, 0, "fd", &fd)) return env.Undefined();
  if (info.Length() < 2 || !info[1].IsBuffer()) {
    Napi::TypeError::New(env, "appendWrite(fd, data: Buffer, length)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Buffer<uint8_t> data = info[1].As<Napi::Buffer<uint8_t>>();
  if (!GetSize(info, 2, "length", &len)) return env.Undefined();
  if (len > data.Length()) {
    Napi::RangeError::New(env, "appendWrite: length is larger than the buffer").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return (new AppendWriteWorker(env, fd, data, static_cast<size_t>(len)))->Start();
}

// sdNotify(socketPath, message): one datagram to systemd's NOTIFY_SOCKET.
Napi::Value SdNotify(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string socket, msg;
  if (!GetString(info, 0, "socketPath", &socket) || !GetString(info, 1, "message", &msg))
    return env.Undefined();
  return (new NotifyWorker(env, std::move(socket), std::move(msg)))->Start();
}

// getxattr(path, name)
Napi::Value Getxattr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path, name;
  if (!GetString(info, 0, "path", &path) || !GetString(info, 1, "name", &name))
    return env.Undefined();
  int at;
  if (!GetAt(info, 2, &at)) return env.Undefined();
  return (new GetxattrWorker(env, std::move(path), std::move(name)))->At(at)->Start();
}

// setxattr(path, name, value, flags)
Napi::Value Setxattr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path, name;
  if (!GetString(info, 0, "path", &path) || !GetString(info, 1, "name", &name))
    return env.Undefined();
  Napi::Value v = info[2];
  // Buffer is a Uint8Array, so this accepts both.
  if (!v.IsTypedArray() ||
      v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    ThrowTypeError(env, "ERR_INVALID_ARG_TYPE",
                   "The \"value\" argument must be an instance of Buffer or "
                   "Uint8Array");
    return env.Undefined();
  }
  uint32_t flags;
  int at;
  if (!GetUint32(info, 3, "flags", &flags) || !GetAt(info, 4, &at)) return env.Undefined();
  Napi::Uint8Array arr = v.As<Napi::Uint8Array>();
  std::vector<uint8_t> value(arr.Data(), arr.Data() + arr.ByteLength());
  return (new SetxattrWorker(env, std::move(path), std::move(name),
                             std::move(value), static_cast<int>(flags)))
      ->At(at)->Start();
}

// prepareObject(path, create, mode, size, names, values, uid, gid, chmodMode)
// create: 0 none, 1 directory, 2 file; uid/gid/chmodMode: -1 = leave as is.
Napi::Value PrepareObject(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  uint32_t create, mode;
  uint64_t size;
  if (!GetString(info, 0, "path", &path) ||
      !GetUint32(info, 1, "create", &create) ||
      !GetUint32(info, 2, "mode", &mode) || !GetSize(info, 3, "size", &size))
    return env.Undefined();
  if (create > 2) {
    ThrowRangeError(env, "The value of \"create\" must be 0, 1 or 2");
    return env.Undefined();
  }
  if (!info[4].IsArray() || !info[5].IsArray() ||
      info[4].As<Napi::Array>().Length() != info[5].As<Napi::Array>().Length()) {
    ThrowTypeError(env, "ERR_INVALID_ARG_TYPE",
                   "The \"names\" and \"values\" arguments must be arrays of the same length");
    return env.Undefined();
  }
  Napi::Array na = info[4].As<Napi::Array>();
  Napi::Array va = info[5].As<Napi::Array>();
  std::vector<std::string> names;
  std::vector<std::vector<uint8_t>> values;
  for (uint32_t i = 0; i < na.Length(); i++) {
    Napi::Value n = na.Get(i);
    Napi::Value v = va.Get(i);
    if (!n.IsString() || !v.IsTypedArray() ||
        v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
      ThrowTypeError(env, "ERR_INVALID_ARG_TYPE",
                     "xattr names must be strings and values Buffers");
      return env.Undefined();
    }
    std::string name = NameBytes(n.As<Napi::String>());
    if (name.find('\0') != std::string::npos) {
      ThrowTypeError(env, "ERR_INVALID_ARG_VALUE",
                     "xattr names must not contain null bytes");
      return env.Undefined();
    }
    Napi::Uint8Array arr = v.As<Napi::Uint8Array>();
    names.push_back(std::move(name));
    values.emplace_back(arr.Data(), arr.Data() + arr.ByteLength());
  }
  int64_t ids[3];
  const char* argn[3] = {"uid", "gid", "chmodMode"};
  for (int k = 0; k < 3; k++) {
    double d;
    if (!CheckInteger(env, info[6 + k], argn[k], -1, 4294967295.0, &d))
      return env.Undefined();
    ids[k] = static_cast<int64_t>(d);
  }
  int at;
  if (!GetAt(info, 9, &at)) return env.Undefined();
  bool drop_acls = info.Length() > 10 && info[10].ToBoolean().Value();
  return (new PrepareObjectWorker(env, std::move(path), static_cast<int>(create),
                                  mode, size, std::move(names),
                                  std::move(values), ids[0], ids[1], ids[2], drop_acls))
      ->At(at)->Start();
}

// Reads names/values arrays of xattrs (strings and Buffers) into vectors.
bool GetXattrList(Napi::Env env, Napi::Value nv, Napi::Value vv,
                  std::vector<std::string>* names,
                  std::vector<std::vector<uint8_t>>* values) {
  if (!nv.IsArray() || !vv.IsArray() ||
      nv.As<Napi::Array>().Length() != vv.As<Napi::Array>().Length()) {
    ThrowTypeError(env, "ERR_INVALID_ARG_TYPE",
                   "The \"names\" and \"values\" arguments must be arrays of the same length");
    return false;
  }
  Napi::Array na = nv.As<Napi::Array>();
  Napi::Array va = vv.As<Napi::Array>();
  for (uint32_t i = 0; i < na.Length(); i++) {
    Napi::Value n = na.Get(i);
    Napi::Value v = va.Get(i);
    if (!n.IsString() || !v.IsTypedArray() ||
        v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
      ThrowTypeError(env, "ERR_INVALID_ARG_TYPE",
                     "xattr names must be strings and values Buffers");
      return false;
    }
    std::string name = NameBytes(n.As<Napi::String>());
    if (name.find('\0') != std::string::npos) {
      ThrowTypeError(env, "ERR_INVALID_ARG_VALUE",
                     "xattr names must not contain null bytes");
      return false;
    }
    Napi::Uint8Array arr = v.As<Napi::Uint8Array>();
    names->push_back(std::move(name));
    values->emplace_back(arr.Data(), arr.Data() + arr.ByteLength());
  }
  return true;
}

// cloneTo(src, dst, mode, at?, dstAt?): dstAt defaults to at
Napi::Value CloneTo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string src, dst;
  uint32_t mode;
  if (!GetString(info, 0, "src", &src) || !GetString(info, 1, "dst", &dst) ||
      !GetUint32(info, 2, "mode", &mode))
    return env.Undefined();
  if (mode > 07777) {
    ThrowRangeError(env, "The value of \"mode\" is out of range. It must be >= 0 && <= 4095. Received " + FormatNumber(mode));
    return env.Undefined();
  }
  int at, dst_at;
  if (!GetAt(info, 3, &at)) return env.Undefined();
  if (info[4].IsUndefined()) dst_at = at;
  else if (!GetAt(info, 4, &dst_at)) return env.Undefined();
  return (new CloneToWorker(env, std::move(src), dst_at, std::move(dst), mode))->At(at)->Start();
}

// finishFile(tmp, create, size, logFd, ranges, names, values, uid, gid,
//            chmodMode, atime, mtime, final)
// size/uid/gid/chmodMode: -1 = leave; logFd: -1 when ranges is empty;
// ranges: flat [logOff, fileOff, length, ...]; final: null = no rename.
Napi::Value FinishFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string tmp, final;
  if (!GetString(info, 0, "tmp", &tmp)) return env.Undefined();
  bool create = info[1].ToBoolean().Value();
  double size, log_fd;
  if (!CheckInteger(env, info[2], "size", -1, kMaxSafeInteger, &size) ||
      !CheckInteger(env, info[3], "logFd", -1, INT_MAX, &log_fd))
    return env.Undefined();
  if (!info[4].IsArray()) {
    ThrowTypeError(env, "ERR_INVALID_ARG_TYPE",
                   "The \"ranges\" argument must be an array of numbers");
    return env.Undefined();
  }
  Napi::Array ra = info[4].As<Napi::Array>();
  if (ra.Length() % 3 != 0) {
    ThrowTypeError(env, "ERR_INVALID_ARG_VALUE",
                   "The \"ranges\" argument must hold [logOffset, fileOffset, length] triples");
    return env.Undefined();
  }
  if (ra.Length() > 0 && log_fd < 0) {
    ThrowRangeError(env, "The value of \"logFd\" must be a descriptor when \"ranges\" is not empty");
    return env.Undefined();
  }
  std::vector<uint64_t> ranges;
  for (uint32_t i = 0; i < ra.Length(); i++) {
    double d;
    if (!CheckInteger(env, ra.Get(i), "ranges[i]", 0, kMaxSafeInteger, &d))
      return env.Undefined();
    ranges.push_back(static_cast<uint64_t>(d));
  }
  std::vector<std::string> names;
  std::vector<std::vector<uint8_t>> values;
  if (!GetXattrList(env, info[5], info[6], &names, &values))
    return env.Undefined();
  int64_t ids[3];
  const char* argn[3] = {"uid", "gid", "chmodMode"};
  for (int k = 0; k < 3; k++) {
    double d;
    if (!CheckInteger(env, info[7 + k], argn[k], -1, 4294967295.0, &d))
      return env.Undefined();
    ids[k] = static_cast<int64_t>(d);
  }
  struct timespec atime, mtime;
  if (!GetTimeSpec(info, 10, "atime", &atime) ||
      !GetTimeSpec(info, 11, "mtime", &mtime))
    return env.Undefined();
  bool rename = !info[12].IsNull() && !info[12].IsUndefined();
  if (rename && !GetString(info, 12, "final", &final)) return env.Undefined();
  if (!info[13].IsNull() && !info[13].IsUndefined() && !info[13].IsBuffer()) {
    ThrowTypeError(env, "ERR_INVALID_ARG_TYPE", "The \"data\" argument must be a Buffer or null");
    return env.Undefined();
  }
  int at;
  if (!GetAt(info, 14, &at)) return env.Undefined();
  bool drop_acls = info.Length() > 15 && info[15].ToBoolean().Value();
  return (new FinishFileWorker(env, std::move(tmp), create,
                               static_cast<int64_t>(size),
                               static_cast<int>(log_fd), std::move(ranges),
                               std::move(names), std::move(values), ids[0],
                               ids[1], ids[2], atime, mtime, std::move(final),
                               rename, info[13], drop_acls))
      ->At(at)->Start();
}

// The calls that take one path: readXattrs, listxattr, readdirIno.
template <class Worker>
Napi::Value StartOnPath(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  int at;
  if (!GetString(info, 0, "path", &path) || !GetAt(info, 1, &at)) return env.Undefined();
  return (new Worker(env, std::move(path)))->At(at)->Start();
}

// sha256Blocks(data, lengths)
Napi::Value Sha256Blocks(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsBuffer() || !info[1].IsArray()) {
    Napi::TypeError::New(env, "sha256Blocks(data: Buffer, lengths: number[])").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Buffer<uint8_t> data = info[0].As<Napi::Buffer<uint8_t>>();
  Napi::Array arr = info[1].As<Napi::Array>();
  std::vector<size_t> lens(arr.Length());
  size_t total = 0;
  for (uint32_t i = 0; i < arr.Length(); i++) {
    Napi::Value v = arr.Get(i);
    double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
    if (!(d >= 0) || d != std::floor(d) || d > (double)(data.Length() - total)) {
      Napi::RangeError::New(env, "sha256Blocks: the lengths must be whole numbers that fit in the buffer").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    lens[i] = (size_t)d;
    total += lens[i];
  }
  return (new Sha256BlocksWorker(env, data, std::move(lens)))->Start();
}

// removexattr(path, name)
Napi::Value Removexattr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path, name;
  if (!GetString(info, 0, "path", &path) || !GetString(info, 1, "name", &name))
    return env.Undefined();
  int at;
  if (!GetAt(info, 2, &at)) return env.Undefined();
  return (new RemovexattrWorker(env, std::move(path), std::move(name)))
      ->At(at)->Start();
}

// scanDir(path, withXattrs)
Napi::Value ScanDir(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  if (!GetString(info, 0, "path", &path)) return env.Undefined();
  bool with_xattrs = info.Length() > 1 && info[1].IsBoolean() && info[1].As<Napi::Boolean>().Value();
  int at;
  if (!GetAt(info, 2, &at)) return env.Undefined();
  return (new ScanDirWorker(env, std::move(path), with_xattrs))->At(at)->Start();
}

// ---------------------------------------------------------------------------
// The local-object layer (src/atops.h): each call takes the directory
// descriptor a path is relative to first, then the path.

// One call: `run` on the thread pool (fills the error), `done` on the main
// thread (the resolved value; undefined when empty).
class CallWorker : public PromiseWorker {
 public:
  using Run = std::function<void(sn_err*)>;
  using Done = std::function<Napi::Value(Napi::Env)>;
  CallWorker(Napi::Env env, const char* name, std::string path, Run run, Done done = nullptr)
      : PromiseWorker(env, name), run_(std::move(run)), done_(std::move(done)) {
    path_ = std::move(path);
  }
  void Execute() override { run_(&err_); }
  Napi::Value Result(Napi::Env env) override { return done_ ? done_(env) : env.Undefined(); }

 private:
  Run run_;
  Done done_;
};

// The (at, path) every call starts with; false after throwing.
bool GetAtPath(const Napi::CallbackInfo& info, int* at, std::string* path) {
  double d;
  if (!CheckInteger(info.Env(), info[0], "dirfd", -100, INT_MAX, &d)) return false;
  if (d < 0 && d != AT_FDCWD) {
    ThrowRangeError(info.Env(), "The value of \"dirfd\" must be a descriptor or AT_FDCWD");
    return false;
  }
  *at = static_cast<int>(d);
  return GetString(info, 1, "path", path);
}

// The stat array statAt and statAtSync answer with: BigInt64Array [dev, mode,
// nlink, uid, gid, rdev, blksize, ino, size, blocks, atime s, ns, mtime s, ns,
// ctime s, ns]
Napi::Value StatArray(Napi::Env env, const struct stat* st) {
  const int64_t v[16] = {
      (int64_t)st->st_dev, (int64_t)st->st_mode, (int64_t)st->st_nlink, (int64_t)st->st_uid,
      (int64_t)st->st_gid, (int64_t)st->st_rdev, (int64_t)st->st_blksize, (int64_t)st->st_ino,
      (int64_t)st->st_size, (int64_t)st->st_blocks, (int64_t)st->st_atim.tv_sec, (int64_t)st->st_atim.tv_nsec,
      (int64_t)st->st_mtim.tv_sec, (int64_t)st->st_mtim.tv_nsec, (int64_t)st->st_ctim.tv_sec, (int64_t)st->st_ctim.tv_nsec,
  };
  Napi::ArrayBuffer buf = Napi::ArrayBuffer::New(env, sizeof v);
  std::memcpy(buf.Data(), v, sizeof v);
  return Napi::TypedArrayOf<int64_t>::New(env, 16, buf, 0, napi_bigint64_array);
}

// statAt(at, path, follow) -> Promise<stat array>
Napi::Value StatAt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int at;
  std::string path;
  if (!GetAtPath(info, &at, &path)) return env.Undefined();
  int follow = info[2].ToBoolean().Value() ? 1 : 0;
  auto st = std::make_shared<struct stat>();
  auto run = [at, path, follow, st](sn_err* err) { sn_stat_at(at, path.c_str(), follow, st.get(), err); };
  auto done = [st](Napi::Env env) -> Napi::Value { return StatArray(env, st.get()); };
  return (new CallWorker(env, "strata:statAt", path, run, done))->Start();
}

// statAtSync(at, path, follow) -> stat array, on the calling thread: for the
// attributes of an object the caller has just changed (its inode is in
// memory), read at the moment they are recorded.
Napi::Value StatAtSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int at;
  std::string path;
  if (!GetAtPath(info, &at, &path)) return env.Undefined();
  int follow = info[2].ToBoolean().Value() ? 1 : 0;
  struct stat st;
  sn_err e = {0, nullptr};
  sn_stat_at(at, path.c_str(), follow, &st, &e);
  if (e.code != 0) {
    MakeErrnoError(env, e, path).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return StatArray(env, &st);
}

// openAt(at, path, flags, mode) -> fd (O_CLOEXEC always added)
Napi::Value OpenAt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int at;
  std::string path;
  uint32_t flags, mode;
  if (!GetAtPath(info, &at, &path) || !GetUint32(info, 2, "flags", &flags) || !GetUint32(info, 3, "mode", &mode))
    return env.Undefined();
  auto fd = std::make_shared<int>(-1);
  auto run = [at, path, flags, mode, fd](sn_err* err) { sn_open_at(at, path.c_str(), (int)flags, mode, fd.get(), err); };
  auto done = [fd](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, *fd); };
  return (new CallWorker(env, "strata:openAt", path, run, done))->Start();
}

// mkdirAt, chmodAt and accessAt(at, path, mode): one path and a mode.
template <int (*Fn)(int, const char*, uint32_t, sn_err*)>
Napi::Value PathModeAt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int at;
  std::string path;
  uint32_t mode;
  if (!GetAtPath(info, &at, &path) || !GetUint32(info, 2, "mode", &mode)) return env.Undefined();
  return (new CallWorker(env, "strata:pathModeAt", path, [at, path, mode](sn_err* err) { Fn(at, path.c_str(), mode, err); }))->Start();
}

// symlinkAt(at, path, target)
Napi::Value SymlinkAt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int at;
  std::string path, target;
  if (!GetAtPath(info, &at, &path) || !GetString(info, 2, "target", &target)) return env.Undefined();
  return (new CallWorker(env, "strata:symlinkAt", path, [at, path, target](sn_err* err) {
    sn_symlink_at(target.c_str(), at, path.c_str(), err);
  }))->Start();
}

// linkAt(at, from, to[, toAt]) and renameAt(at, from, to[, toAt]): `from`
// relative to at, `to` relative to toAt (default: at as well).
template <int (*Fn)(int, const char*, int, const char*, sn_err*)>
Napi::Value TwoPathsAt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int at;
  std::string from, to;
  if (!GetAtPath(info, &at, &from) || !GetString(info, 2, "to", &to)) return env.Undefined();
  int toAt = at;
  if (info.Length() > 3 && !info[3].IsUndefined()) {
    double d;
    if (!CheckInteger(env, info[3], "toAt", -100, INT_MAX, &d)) return env.Undefined();
    if (d < 0 && d != AT_FDCWD) {
      ThrowRangeError(env, "The value of \"toAt\" must be a descriptor or AT_FDCWD");
      return env.Undefined();
    }
    toAt = static_cast<int>(d);
  }
  return (new CallWorker(env, "strata:twoPathsAt", from, [at, from, toAt, to](sn_err* err) { Fn(at, from.c_str(), toAt, to.c_str(), err); }))->Start();
}

// unlinkAt(at, path, isDir)
Napi::Value UnlinkAt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int at;
  std::string path;
  if (!GetAtPath(info, &at, &path)) return env.Undefined();
  int dir = info[2].ToBoolean().Value() ? 1 : 0;
  return (new CallWorker(env, "strata:unlinkAt", path, [at, path, dir](sn_err* err) { sn_unlink_at(at, path.c_str(), dir, err); }))->Start();
}

// readlinkAt(at, path) -> string (the target's bytes as names.h maps them)
Napi::Value ReadlinkAt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int at;
  std::string path;
  if (!GetAtPath(info, &at, &path)) return env.Undefined();
  auto out = std::make_shared<std::string>();
  auto run = [at, path, out](sn_err* err) {
    char* buf = nullptr;
    size_t len = 0;
    if (sn_readlink_at(at, path.c_str(), &buf, &len, err) == 0) out->assign(buf, len);
    std::free(buf);
  };
  auto done = [out](Napi::Env env) -> Napi::Value { return NameString(env, *out); };
  return (new CallWorker(env, "strata:readlinkAt", path, run, done))->Start();
}

// chownAt(at, path, uid, gid): -1 leaves one as it is; never follows.
Napi::Value ChownAt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int at;
  std::string path;
  double uid, gid;
  if (!GetAtPath(info, &at, &path) || !CheckInteger(env, info[2], "uid", -1, 4294967295.0, &uid) ||
      !CheckInteger(env, info[3], "gid", -1, 4294967295.0, &gid))
    return env.Undefined();
  int64_t u = (int64_t)uid, g = (int64_t)gid;
  return (new CallWorker(env, "strata:chownAt", path, [at, path, u, g](sn_err* err) { sn_chown_at(at, path.c_str(), u, g, err); }))->Start();
}

// truncateAt(at, path, size)
Napi::Value TruncateAt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int at;
  std::string path;
  uint64_t size;
  if (!GetAtPath(info, &at, &path) || !GetSize(info, 2, "size", &size)) return env.Undefined();
  return (new CallWorker(env, "strata:truncateAt", path, [at, path, size](sn_err* err) { sn_truncate_at(at, path.c_str(), size, err); }))->Start();
}

// statfsAt(at, path) -> { bsize, blocks, bfree, bavail, files, ffree, namelen }
Napi::Value StatfsAt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int at;
  std::string path;
  if (!GetAtPath(info, &at, &path)) return env.Undefined();
  auto sf = std::make_shared<struct statfs>();
  auto run = [at, path, sf](sn_err* err) { sn_statfs_at(at, path.c_str(), sf.get(), err); };
  auto done = [sf](Napi::Env env) -> Napi::Value {
    Napi::Object o = Napi::Object::New(env);
    o.Set("bsize", Napi::Number::New(env, (double)sf->f_bsize));
    o.Set("blocks", Napi::Number::New(env, (double)sf->f_blocks));
    o.Set("bfree", Napi::Number::New(env, (double)sf->f_bfree));
    o.Set("bavail", Napi::Number::New(env, (double)sf->f_bavail));
    o.Set("files", Napi::Number::New(env, (double)sf->f_files));
    o.Set("ffree", Napi::Number::New(env, (double)sf->f_ffree));
    o.Set("namelen", Napi::Number::New(env, (double)sf->f_namelen));
    return o;
  };
  return (new CallWorker(env, "strata:statfsAt", path, run, done))->Start();
}

// ---------------------------------------------------------------------------
// POSIX rules (fuse-native/src/posix_rules.h, shared with the FUSE bridge):
// synchronous, no I/O.

// xattrAt(enable?) -> whether the xattr calls use the kernel's *at forms
// (Linux 6.13; atpath.h); with a boolean, turns them on or off first.
Napi::Value XattrAt(const Napi::CallbackInfo& info) {
  if (info.Length() > 0 && info[0].IsBoolean()) sn_xattrat_enable(info[0].As<Napi::Boolean>().Value() ? 1 : 0);
  return Napi::Boolean::New(info.Env(), sn_xattrat_enabled() != 0);
}

// dupFd(fd) -> a new descriptor of the same open file (F_DUPFD_CLOEXEC), at
// once: one syscall that touches no disk, so a caller can own a descriptor
// before it awaits anything, while the one it was given is surely open.
Napi::Value DupFd(const Napi::CallbackInfo& info) {
  uint32_t fd;
  if (!GetUint32(info, 0, "fd", &fd)) return info.Env().Undefined();
  int dup = fcntl(static_cast<int>(fd), F_DUPFD_CLOEXEC, 0);
  if (dup < 0) {
    sn_err e;
    SN_FAIL(&e, errno, "fcntl");
    MakeErrnoError(info.Env(), e, "").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  return Napi::Number::New(info.Env(), dup);
}

// setIdDrop(mode, inGroup) -> the set-ID bits a change by a process without CAP_FSETID drops
Napi::Value SetIdDrop(const Napi::CallbackInfo& info) {
  uint32_t mode;
  if (!GetUint32(info, 0, "mode", &mode)) return info.Env().Undefined();
  int in_group = info[1].ToBoolean().Value() ? 1 : 0;
  return Napi::Number::New(info.Env(), sr_setid_drop(static_cast<mode_t>(mode), in_group));
}

// setIdNeedsGroups(mode) -> whether setIdDrop's answer depends on inGroup
Napi::Value SetIdNeedsGroups(const Napi::CallbackInfo& info) {
  uint32_t mode;
  if (!GetUint32(info, 0, "mode", &mode)) return info.Env().Undefined();
  return Napi::Boolean::New(info.Env(), sr_setid_needs_groups(static_cast<mode_t>(mode)) != 0);
}

// ownerNeedsParent(callerUid, callerGid, daemonUid, daemonGid) -> boolean
Napi::Value OwnerNeedsParent(const Napi::CallbackInfo& info) {
  uint32_t v[4];
  const char* names[4] = {"callerUid", "callerGid", "daemonUid", "daemonGid"};
  for (int k = 0; k < 4; k++)
    if (!GetUint32(info, k, names[k], &v[k])) return info.Env().Undefined();
  return Napi::Boolean::New(info.Env(), sr_owner_needs_parent(v[0], v[1], v[2], v[3]) != 0);
}

// creationMode(mode, umask, parentDefaultAcl) -> the mode to create with
Napi::Value CreationMode(const Napi::CallbackInfo& info) {
  uint32_t mode, umask;
  if (!GetUint32(info, 0, "mode", &mode) || !GetUint32(info, 1, "umask", &umask)) return info.Env().Undefined();
  bool acl = info.Length() > 2 && info[2].ToBoolean().Value();
  return Napi::Number::New(info.Env(), sr_creation_mode(static_cast<mode_t>(mode), static_cast<mode_t>(umask), acl ? 1 : 0));
}

// newOwner(callerUid, callerGid, parentMode, daemonUid, daemonGid) -> [uid, gid] (gid -1: keep) or null
Napi::Value NewOwner(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t v[5];
  const char* names[5] = {"callerUid", "callerGid", "parentMode", "daemonUid", "daemonGid"};
  for (int k = 0; k < 5; k++)
    if (!GetUint32(info, k, names[k], &v[k])) return env.Undefined();
  uid_t uid;
  gid_t gid;
  if (!sr_new_owner(v[0], v[1], static_cast<mode_t>(v[2]), v[3], v[4], &uid, &gid)) return env.Null();
  Napi::Array out = Napi::Array::New(env, 2);
  out.Set(0u, Napi::Number::New(env, uid));
  out.Set(1u, Napi::Number::New(env, gid == static_cast<gid_t>(-1) ? -1.0 : static_cast<double>(gid)));
  return out;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("copyRange", Napi::Function::New(env, CopyRange, "copyRange"));
  exports.Set("cloneFile", Napi::Function::New(env, CloneFile, "cloneFile"));
  exports.Set("listExtents",
              Napi::Function::New(env, ListExtents, "listExtents"));
  exports.Set("readFileQuiet",
              Napi::Function::New(env, ReadFileQuiet, "readFileQuiet"));
  exports.Set("utimens", Napi::Function::New(env, Utimens, "utimens"));
  exports.Set("futimens", Napi::Function::New(env, Futimens, "futimens"));
  exports.Set("mknod", Napi::Function::New(env, Mknod, "mknod"));
  exports.Set("fallocate", Napi::Function::New(env, Fallocate, "fallocate"));
  exports.Set("appendWrite", Napi::Function::New(env, AppendWrite, "appendWrite"));
  exports.Set("getxattr", Napi::Function::New(env, Getxattr, "getxattr"));
  exports.Set("setxattr", Napi::Function::New(env, Setxattr, "setxattr"));
  exports.Set("listxattr", Napi::Function::New(env, StartOnPath<ListxattrWorker>, "listxattr"));
  exports.Set("prepareObject",
              Napi::Function::New(env, PrepareObject, "prepareObject"));
  exports.Set("readXattrs",
              Napi::Function::New(env, StartOnPath<ReadXattrsWorker>, "readXattrs"));
  exports.Set("cloneTo", Napi::Function::New(env, CloneTo, "cloneTo"));
  exports.Set("finishFile",
              Napi::Function::New(env, FinishFile, "finishFile"));
  exports.Set("removexattr",
              Napi::Function::New(env, Removexattr, "removexattr"));
  exports.Set("readdirIno", Napi::Function::New(env, StartOnPath<ReaddirWorker>, "readdirIno"));
  exports.Set("scanDir", Napi::Function::New(env, ScanDir, "scanDir"));
  exports.Set("sdNotify", Napi::Function::New(env, SdNotify, "sdNotify"));
  exports.Set("sha256Blocks", Napi::Function::New(env, Sha256Blocks, "sha256Blocks"));
  exports.Set("xattrAt", Napi::Function::New(env, XattrAt, "xattrAt"));
  exports.Set("dupFd", Napi::Function::New(env, DupFd, "dupFd"));
  exports.Set("setIdDrop", Napi::Function::New(env, SetIdDrop, "setIdDrop"));
  exports.Set("setIdNeedsGroups", Napi::Function::New(env, SetIdNeedsGroups, "setIdNeedsGroups"));
  exports.Set("ownerNeedsParent", Napi::Function::New(env, OwnerNeedsParent, "ownerNeedsParent"));
  exports.Set("newOwner", Napi::Function::New(env, NewOwner, "newOwner"));
  exports.Set("creationMode", Napi::Function::New(env, CreationMode, "creationMode"));
  exports.Set("statAt", Napi::Function::New(env, StatAt, "statAt"));
  exports.Set("statAtSync", Napi::Function::New(env, StatAtSync, "statAtSync"));
  exports.Set("openAt", Napi::Function::New(env, OpenAt, "openAt"));
  exports.Set("mkdirAt", Napi::Function::New(env, PathModeAt<sn_mkdir_at>, "mkdirAt"));
  exports.Set("symlinkAt", Napi::Function::New(env, SymlinkAt, "symlinkAt"));
  exports.Set("linkAt", Napi::Function::New(env, TwoPathsAt<sn_link_at>, "linkAt"));
  exports.Set("renameAt", Napi::Function::New(env, TwoPathsAt<sn_rename_at>, "renameAt"));
  exports.Set("renameNoReplaceAt", Napi::Function::New(env, TwoPathsAt<sn_rename_noreplace_at>, "renameNoReplaceAt"));
  exports.Set("renameExchangeAt", Napi::Function::New(env, TwoPathsAt<sn_rename_exchange_at>, "renameExchangeAt"));
  exports.Set("unlinkAt", Napi::Function::New(env, UnlinkAt, "unlinkAt"));
  exports.Set("readlinkAt", Napi::Function::New(env, ReadlinkAt, "readlinkAt"));
  exports.Set("chmodAt", Napi::Function::New(env, PathModeAt<sn_chmod_at>, "chmodAt"));
  exports.Set("chownAt", Napi::Function::New(env, ChownAt, "chownAt"));
  exports.Set("truncateAt", Napi::Function::New(env, TruncateAt, "truncateAt"));
  exports.Set("accessAt", Napi::Function::New(env, PathModeAt<sn_access_at>, "accessAt"));
  exports.Set("statfsAt", Napi::Function::New(env, StatfsAt, "statfsAt"));

  Napi::Object c = Napi::Object::New(env);
  c.Set("FALLOC_FL_KEEP_SIZE", Napi::Number::New(env, FALLOC_FL_KEEP_SIZE));
  c.Set("FALLOC_FL_PUNCH_HOLE", Napi::Number::New(env, FALLOC_FL_PUNCH_HOLE));
  c.Set("FALLOC_FL_ZERO_RANGE", Napi::Number::New(env, FALLOC_FL_ZERO_RANGE));
  c.Set("XATTR_CREATE", Napi::Number::New(env, XATTR_CREATE));
  c.Set("XATTR_REPLACE", Napi::Number::New(env, XATTR_REPLACE));
  c.Set("DT_UNKNOWN", Napi::Number::New(env, DT_UNKNOWN));
  c.Set("DT_FIFO", Napi::Number::New(env, DT_FIFO));
  c.Set("DT_CHR", Napi::Number::New(env, DT_CHR));
  c.Set("DT_DIR", Napi::Number::New(env, DT_DIR));
  c.Set("DT_BLK", Napi::Number::New(env, DT_BLK));
  c.Set("DT_REG", Napi::Number::New(env, DT_REG));
  c.Set("DT_LNK", Napi::Number::New(env, DT_LNK));
  c.Set("DT_SOCK", Napi::Number::New(env, DT_SOCK));
  c.Set("AT_FDCWD", Napi::Number::New(env, AT_FDCWD));
  exports.Set("constants", c);
  return exports;
}

}  // namespace

NODE_API_MODULE(strata_native, Init)
