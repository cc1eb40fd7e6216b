{
  "targets": [
    {
      "target_name": "strata_native",
      "sources": [
        "native/src/atops.c",
        "native/src/atpath.c",
        "native/src/blockcopy.c",
        "native/src/digest.c",
        "native/src/dirents.c",
        "native/src/scandir.c",
        "native/src/sysops.c",
        "native/src/notify.c",
        "native/src/xattr.c",
        "native/binding.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_DISABLE_CPP_EXCEPTIONS",
        "_GNU_SOURCE"
      ],
      "cflags_c": ["-std=gnu11"],
      "configurations": {
        "Release": {
          "cflags!": ["-O3"],
          "cflags": ["-O2", "-Wall"]
        },
        "Debug": {
          "cflags": ["-Wall"]
        }
      }
    }
  ]
}
