#!/usr/bin/env node
// A native-solc look-alike over solc-js, for py-solc-x and ape-solidity (see DESIGN.md):
// the npm `solc` CLI prints noise before its JSON and truncates piped output near 64 KiB.
'use strict';
const fs = require('fs');
const path = require('path');
const solc = require('solc');

const args = process.argv.slice(2);

function writeAll(text) {
  // Synchronous writes so a pipe reader never sees a cut-off document.
  const buf = Buffer.from(text, 'utf8');
  let off = 0;
  while (off < buf.length) {
    try {
      off += fs.writeSync(1, buf, off, buf.length - off);
    } catch (err) {
      if (err.code !== 'EAGAIN') throw err;
    }
  }
}

if (args.includes('--version')) {
  const long = solc.version(); // e.g. 0.8.30+commit.73712a01.Emscripten.clang
  writeAll(`solc, the solidity compiler commandline interface\nVersion: ${long}\n`);
  process.exit(0);
}

if (!args.includes('--standard-json')) {
  process.stderr.write('solc-shim: only --version and --standard-json are supported\n');
  process.exit(2);
}

const roots = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--base-path' || args[i] === '--include-path') roots.push(args[++i]);
  else if (args[i].startsWith('--base-path=') || args[i].startsWith('--include-path=')) {
    roots.push(args[i].split('=', 2)[1]);
  }
}
if (roots.length === 0) roots.push(process.cwd());

function findImports(importPath) {
  for (const root of roots) {
    const candidate = path.resolve(root, importPath);
    if (fs.existsSync(candidate)) return { contents: fs.readFileSync(candidate, 'utf8') };
  }
  if (path.isAbsolute(importPath) && fs.existsSync(importPath)) {
    return { contents: fs.readFileSync(importPath, 'utf8') };
  }
  return { error: `File not found in ${roots.join(', ')}: ${importPath}` };
}

const input = fs.readFileSync(0, 'utf8');
writeAll(solc.compile(input, { import: findImports }));
