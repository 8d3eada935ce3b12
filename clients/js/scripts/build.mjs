// Bundles src/ into one ES module, dist/lad-live.js, with no runtime
// dependency. `--check` fails when the committed bundle is not what the
// sources build to (the hub embeds that file in its binary).

import { build } from "esbuild";
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const outfile = join(root, "dist", "lad-live.js");
const { version } = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));

const result = await build({
  entryPoints: [join(root, "src", "index.ts")],
  bundle: true,
  format: "esm",
  platform: "neutral",
  target: "es2022",
  write: false,
  legalComments: "none",
  banner: { js: `// @lad/live-client ${version}: built from clients/js/src by scripts/build.mjs. Do not edit.` },
});
const text = result.outputFiles[0].text;

if (process.argv.includes("--check")) {
  let current = "";
  try {
    current = readFileSync(outfile, "utf8");
  } catch {
    // A missing bundle is a mismatch like any other.
  }
  if (current !== text) {
    console.error("dist/lad-live.js is not what src/ builds to: run `npm run build` in clients/js and commit it");
    process.exit(1);
  }
  console.log("dist/lad-live.js matches src/");
} else {
  mkdirSync(dirname(outfile), { recursive: true });
  writeFileSync(outfile, text);
  console.log(`wrote ${outfile} (${text.length} bytes)`);
}
