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

const combined = args.indexOf('--combined-json');
if (!args.includes('--standard-json') && combined < 0) {
  process.stderr.write('solc-shim: only --version, --standard-json and --combined-json are supported\n');
  process.exit(2);
}

// Flags with a value; any other argument is a remapping (prefix=target) or a source file.
const VALUED = ['--base-path', '--include-path', '--allow-paths', '--combined-json', '--evm-version',
  '--optimize-runs'];
const roots = [];
const remappings = [];
const files = [];
const options = {};
for (let i = 0; i < args.length; i++) {
  let [flag, value] = args[i].split(/=(.*)/s);
  if (VALUED.includes(flag)) {
    if (value === undefined) value = args[++i];
    options[flag] = value;
    if (flag === '--base-path' || flag === '--include-path') roots.push(value);
  } else if (args[i] === '--optimize') options[flag] = true;
  else if (!args[i].startsWith('--')) (args[i].includes('=') ? remappings : files).push(args[i]);
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

if (combined < 0) {
  const input = fs.readFileSync(0, 'utf8');
  writeAll(solc.compile(input, { import: findImports }));
  process.exit(0);
}

// --combined-json (what crytic-compile, hence slither, asks of a native solc): the same compilation
// through standard JSON, reshaped into the combined-json document native solc prints.
const input = {
  language: 'Solidity',
  sources: Object.fromEntries(files.map((f) => [f, { content: fs.readFileSync(f, 'utf8') }])),
  settings: {
    remappings,
    optimizer: { enabled: Boolean(options['--optimize']), runs: Number(options['--optimize-runs'] || 200) },
    ...(options['--evm-version'] ? { evmVersion: options['--evm-version'] } : {}),
    outputSelection: {
      '*': {
        '*': ['abi', 'evm.bytecode.object', 'evm.bytecode.sourceMap', 'evm.deployedBytecode.object',
          'evm.deployedBytecode.sourceMap', 'evm.methodIdentifiers', 'userdoc', 'devdoc'],
        '': ['ast'],
      },
    },
  },
};
const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
const errors = (output.errors || []).filter((e) => e.severity === 'error');
for (const e of output.errors || []) process.stderr.write(e.formattedMessage || e.message);
if (errors.length > 0) process.exit(1);

const contracts = {};
for (const [source, byName] of Object.entries(output.contracts || {})) {
  for (const [name, c] of Object.entries(byName)) {
    contracts[`${source}:${name}`] = {
      abi: c.abi,
      bin: c.evm.bytecode.object,
      'bin-runtime': c.evm.deployedBytecode.object,
      srcmap: c.evm.bytecode.sourceMap,
      'srcmap-runtime': c.evm.deployedBytecode.sourceMap,
      hashes: c.evm.methodIdentifiers,
      userdoc: c.userdoc,
      devdoc: c.devdoc,
    };
  }
}
const sourceList = Object.keys(output.sources).sort((a, b) => output.sources[a].id - output.sources[b].id);
const sources = Object.fromEntries(sourceList.map((s) => [s, { AST: output.sources[s].ast, id: output.sources[s].id }]));
writeAll(JSON.stringify({ contracts, sourceList, sources, version: solc.version() }));
