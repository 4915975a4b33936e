// Parses AsyncAPI documents with the official parser and prints what it found, as a JSON
// list with one entry per document: {"diagnostics": [{"code", "message", "path",
// "severity"}], "operations": {...}}, where a severity is 0 error, 1 warning,
// 2 information, 3 hint, and "operations" (null when the document did not parse) maps each
// operation to its action, channel addresses and message ids as the parser resolved them.
// Exit 0 when every document parsed, 1 when one did not.
// Usage: NODE_PATH=<dir>/node_modules node validate.cjs FILE...
"use strict";
const path = require("node:path");
const { Parser, fromFile } = require("@asyncapi/parser");

function operations(document) {
  const found = {};
  for (const operation of document.operations().all()) {
    found[operation.id()] = {
      action: operation.action(),
      channels: operation.channels().all().map((channel) => channel.address()),
      messages: operation.messages().all().map((message) => message.id()),
    };
  }
  return found;
}

async function parse(parser, file) {
  const { document, diagnostics } = await fromFile(parser, path.resolve(file)).parse();
  const found = diagnostics.map((d) => ({
    code: String(d.code),
    message: d.message,
    path: d.path.join("/"),
    severity: d.severity,
  }));
  return { diagnostics: found, operations: document === undefined ? null : operations(document) };
}

async function main(files) {
  const parser = new Parser();
  const results = [];
  for (const file of files) {
    results.push(await parse(parser, file));
  }
  process.stdout.write(JSON.stringify(results) + "\n");
  return results.every((result) => result.operations !== null) ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    process.stderr.write(`${error.stack || error}\n`);
    process.exit(2);
  },
);
