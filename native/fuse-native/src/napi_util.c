// napi_util.c - small N-API helpers shared by the JavaScript-callable functions.
#include "bridge.h"
#include <string.h>
#include "names.h"

napi_value js_num (napi_env env, double d) {
  napi_value v;
  napi_create_double(env, d, &v);
  return v;
}

napi_value js_bool (napi_env env, int b) {
  napi_value v;
  napi_get_boolean(env, b != 0, &v);
  return v;
}

// A name (or symlink target) of a request: its bytes as names.h maps them.
napi_value js_name_or_undefined (napi_env env, const char *str) {
  napi_value v;
  if (str == NULL || sn_js_name(env, str, strlen(str), &v) != napi_ok) napi_get_undefined(env, &v);
  return v;
}

double js_dbl (napi_env env, napi_value v) {
  double d = 0;
  napi_get_value_double(env, v, &d);
  return d;
}

void js_throw_type (napi_env env, const char *msg) {
  napi_throw_type_error(env, NULL, msg);
}

// The session behind a value mount() returned, or NULL after throwing.
bridge_session_t *js_session (napi_env env, napi_value v) {
  bridge_session_t *s = NULL;
  if (v == NULL || napi_get_value_external(env, v, (void **) &s) != napi_ok || s == NULL) {
    js_throw_type(env, "not a session (the value mount() returned)");
    return NULL;
  }
  return s;
}

// fn(session, nodeid, on) -> whether the node has an entry: sets one of a node's
// flags from JavaScript through `set` (node_set_settled, node_set_journal).
napi_value js_node_flag (napi_env env, napi_callback_info info, int (*set) (bridge_session_t *, uint64_t, int)) {
  JS_ARGS(3)
  bridge_session_t *s = js_session(env, argv[0]);
  if (s == NULL) return NULL;
  if (s->closed || !nodes_ready(s)) return js_bool(env, 0);
  bool on = false;
  napi_get_value_bool(env, argv[2], &on);
  return js_bool(env, set(s, (uint64_t) js_dbl(env, argv[1]), on));
}

// A Float64Array of two counters, each read atomically (relaxed: figures for status, not synchronisation).
napi_value js_counter_pair (napi_env env, const uint64_t *a, const uint64_t *b) {
  napi_value ab, arr;
  void *data;
  napi_create_arraybuffer(env, 2 * sizeof(double), &data, &ab);
  ((double *) data)[0] = (double) __atomic_load_n(a, __ATOMIC_RELAXED);
  ((double *) data)[1] = (double) __atomic_load_n(b, __ATOMIC_RELAXED);
  napi_create_typedarray(env, napi_float64_array, 2, ab, 0, &arr);
  return arr;
}
