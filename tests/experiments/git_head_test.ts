import assert from "node:assert/strict";
import { gitHead } from "../../src/experiments/common.ts";

async function git(cwd: string, ...args: string[]): Promise<string> {
  const out = await new Deno.Command("git", {
    args,
    cwd,
    stdout: "piped",
    stderr: "piped",
    env: {
      GIT_AUTHOR_NAME: "t",
      GIT_AUTHOR_EMAIL: "t@example.com",
      GIT_COMMITTER_NAME: "t",
      GIT_COMMITTER_EMAIL: "t@example.com",
    },
  }).output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout).trim();
}

const hasGit = await new Deno.Command("git", { args: ["--version"], stdout: "null" }).output()
  .then((o) => o.success).catch(() => false);

Deno.test({
  name: "gitHead() reads the commit as git rev-parse does: branch, packed refs, detached, worktree",
  ignore: !hasGit,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const repo = `${dir}/repo`;
      await Deno.mkdir(repo);
      await git(repo, "init", "-q", "-b", "main");
      await Deno.writeTextFile(`${repo}/a.txt`, "a");
      await git(repo, "add", "a.txt");
      await git(repo, "commit", "-q", "-m", "one");
      assert.equal(await gitHead(repo), await git(repo, "rev-parse", "HEAD"));

      // Branch refs packed away: only packed-refs holds the commit.
      await git(repo, "pack-refs", "--all");
      assert.equal(await gitHead(repo), await git(repo, "rev-parse", "HEAD"));

      // A worktree: `.git` is a file pointing into the main repository, refs in its common dir.
      await Deno.writeTextFile(`${repo}/a.txt`, "b");
      await git(repo, "commit", "-q", "-am", "two");
      const wt = `${dir}/wt`;
      await git(repo, "worktree", "add", "-q", "-b", "side", wt);
      assert.ok((await Deno.stat(`${wt}/.git`)).isFile);
      assert.equal(await gitHead(wt), await git(wt, "rev-parse", "HEAD"));
      await git(repo, "pack-refs", "--all");
      assert.equal(await gitHead(wt), await git(wt, "rev-parse", "HEAD"));

      // Detached HEAD in the worktree.
      await git(wt, "checkout", "-q", "--detach", "HEAD~1");
      assert.equal(await gitHead(wt), await git(wt, "rev-parse", "HEAD"));

      // No repository at all.
      assert.equal(await gitHead(dir), undefined);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
