-- ngx.run_worker_thread with its failures told apart: out of room (no
-- Lua VM left, the pool's queue full), which a caller answers with 503 and
-- Retry-After, or broken, a 500. For kfsmtp.openresty and kfsmtp.callers.
local _M = {}

-- What ngx.run_worker_thread answers when it is out of room rather than
-- broken: no Lua VM left in this worker (lua_worker_thread_vm_pool_size,
-- shared by every pool), or the pool's queue full (max_queue).
local OUT_OF_ROOM = { ["no available Lua vm"] = true, ["ngx_thread_task_post failed"] = true, ["no memory"] = true }

-- run(pool, module, fn, ...) --> the function's results
--   | nil, "unavailable" | "internal", message
function _M.run(pool, module, fn, ...)
  local ok, a, b = ngx.run_worker_thread(pool, module, fn, ...)
  if ok then return a, b end
  local room = OUT_OF_ROOM[a]
  ngx.log(room and ngx.WARN or ngx.ERR, "kfsmtp: worker thread (", pool, "): ", tostring(a))
  return nil, room and "unavailable" or "internal", tostring(a)
end

return _M
