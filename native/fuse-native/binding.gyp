{
  "targets": [{
    "target_name": "fuse_bridge",
    "sources": [
      "src/module.c",
      "src/session.c",
      "src/intake.c",
      "src/requests.c",
      "src/replies.c",
      "src/nodes.c",
      "src/fastpath.c",
      "src/track.c",
      "src/journal.c",
      "src/passthrough.c",
      "src/settled.c",
      "src/napi_util.c"
    ],
    "cflags": ["<!@(pkg-config --cflags fuse3)"],
    "libraries": ["<!@(pkg-config --libs fuse3)"],
    "defines": ["NAPI_VERSION=8", "_GNU_SOURCE", "_FILE_OFFSET_BITS=64"],
    "cflags!": ["-O3"],
    "cflags_c": ["-std=gnu11", "-O2", "-g", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"]
  }]
}
