#!/usr/bin/env node
// The CLI is bundled from the extension's own model reader (dist/cli.js): one parser for both faces.
require('../dist/cli.js')
  .main(process.argv.slice(2))
  .then((code) => {
    process.exitCode = code;
  });
