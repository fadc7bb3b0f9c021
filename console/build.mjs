// Builds the console into hub/console/static/ (or --outdir DIR): one ES module bundle
// (console.js), one stylesheet (console.css) and the page (index.html); likewise the admins'
// rules replay page (rules-diff.js, rules-diff.css, rules-diff.html). The output is
// deterministic, so the committed files change only when the sources do.
// `node build.mjs --tests` bundles test/*.test.ts into .test-build/ for `node --test`.
import { build } from "esbuild";
import { copyFile, mkdir, readdir, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const option = (name) => {
  const at = args.indexOf(name);
  return at === -1 ? undefined : args[at + 1];
};

const common = {
  bundle: true,
  jsx: "automatic",
  jsxImportSource: "preact",
  target: "es2020",
  legalComments: "none",
  logLevel: "warning",
};

if (args.includes("--tests")) {
  const out = join(here, ".test-build");
  await rm(out, { recursive: true, force: true });
  const tests = (await readdir(join(here, "test"))).filter((name) => name.endsWith(".test.ts"));
  await build({
    ...common,
    entryPoints: tests.map((name) => join(here, "test", name)),
    outdir: out,
    outExtension: { ".js": ".mjs" },
    platform: "node",
    format: "esm",
  });
} else {
  const out = option("--outdir") ?? join(here, "..", "hub", "console", "static");
  await mkdir(out, { recursive: true });
  await build({
    ...common,
    entryPoints: {
      console: join(here, "src", "main.tsx"),
      "rules-diff": join(here, "src", "rulesdiff", "main.tsx"),
    },
    outdir: out,
    format: "esm",
    minify: true,
    sourcemap: false,
    platform: "browser",
    charset: "utf8",
  });
  await copyFile(join(here, "index.html"), join(out, "index.html"));
  await copyFile(join(here, "src", "rulesdiff", "index.html"), join(out, "rules-diff.html"));
}
