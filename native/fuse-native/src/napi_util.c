// napi_util.c - small N-API helpers shared by the JavaScript-callable functions.
#include "bridge.h"

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

napi_value js_str_or_undefined (napi_env env, const char *str) {
  napi_value v;
  if (str == NULL) napi_get_undefined(env, &v);
  else napi_create_string_utf8(env, str, NAPI_AUTO_LENGTH, &v);
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
