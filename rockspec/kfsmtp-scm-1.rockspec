-- The version of the code is in csrc/version.h; spec/output_spec.lua checks
-- that any release rockspec next to this one carries that same version.
rockspec_format = "3.0"
package = "kfsmtp"
version = "scm-1"
source = {
  url = "git+https://example.invalid/kfsmtp.git",
}
description = {
  summary = "Keyfactor Command's SMTP profile (GET/PUT /SMTP, POST /SMTP/Test) for Lua, with a libcurl core",
  license = "MIT",
}
dependencies = {
  "lua >= 5.1",
  "lua-cjson",
}
external_dependencies = {
  CURL = { header = "curl/curl.h", library = "curl" },
  OPENSSL = { header = "openssl/ssl.h", library = "ssl" },
  -- Debian: PQ_INCDIR=/usr/include/postgresql (pkg-config --variable=includedir libpq)
  PQ = { header = "libpq-fe.h", library = "pq" },
}
build = {
  type = "builtin",
  modules = {
    kfsmtp = "lua/kfsmtp.lua",
    ["kfsmtp.cli"] = "lua/kfsmtp/cli.lua",
    ["kfsmtp.errors"] = "lua/kfsmtp/errors.lua",
    ["kfsmtp.json"] = "lua/kfsmtp/json.lua",
    ["kfsmtp.core"] = {
      sources = { "csrc/core.c", "csrc/buffer.c", "csrc/deadline.c", "csrc/delivery.c", "csrc/delivery_lua.c", "csrc/encode_lua.c", "csrc/luafield.c",
        "csrc/message.c", "csrc/message_lua.c", "csrc/password.c", "csrc/password_lua.c", "csrc/pgstore.c", "csrc/pgstore_lua.c",
        "csrc/sealing.c", "csrc/sealing_lua.c", "csrc/secretfile.c",
        "csrc/secretfile_lua.c", "csrc/session.c", "csrc/store.c", "csrc/store_lua.c", "csrc/tls.c", "csrc/token.c",
        "csrc/token_lua.c", "csrc/tokencache.c", "csrc/validate.c", "csrc/validate_lua.c", "csrc/vocab.c" },
      defines = { "_GNU_SOURCE" },
      incdirs = { "$(CURL_INCDIR)", "$(OPENSSL_INCDIR)", "$(PQ_INCDIR)" },
      libdirs = { "$(CURL_LIBDIR)", "$(OPENSSL_LIBDIR)", "$(PQ_LIBDIR)" },
      libraries = { "curl", "ssl", "crypto", "pq", "pthread" },
    },
  },
  install = {
    bin = { kfsmtp = "bin/kfsmtp" },
  },
}
