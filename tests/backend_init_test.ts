/**
 * The library doesn't trip its users: in a fresh process that never calls `initBackend()`
 * (tests/_uninitialised.ts, importing mod.ts), a sync call fails with one line that says to
 * `await initBackend()`, and `await loadPretrained(dir)` initialises the backend itself.
 */
import assert from "node:assert/strict";

Deno.test("without initBackend(): sync calls fail with one line naming it; loadPretrained() initialises the backend", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-env",
      "--allow-ffi",
      "--allow-sys",
      new URL("./_uninitialised.ts", import.meta.url).pathname,
      "models/base-lm",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.ok(out.success, stderr);
  const got = JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!);
  for (const key of ["model", "loss"]) {
    assert.match(got[key], /^RecalignError: .*`await initBackend\(\)`/, key);
    assert.ok(!got[key].includes("\n"), `${key}: one line`);
  }
  assert.equal(got.backend, "wasm");
  assert.deepEqual(got.logitsShape, [1, 3, 274]);
  assert.match(stderr, /\[recalign\] backend: wasm/); // said once, by the entry point
});
