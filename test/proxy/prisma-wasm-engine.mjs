#!/usr/bin/env node
/* global process, console, Buffer, WebAssembly */
// A Prisma query engine for prisma-client-py, made of npm's real Prisma engine compiled to WebAssembly
// (`@prisma/query-engine-wasm`) and its PostgreSQL driver adapter (`@prisma/adapter-pg`), because the native
// engine binaries (binaries.prisma.sh) cannot be downloaded here.
//
// prisma-client-py starts "the engine binary" (PRISMA_QUERY_ENGINE_BINARY) as `<file> -p <port> ...` with the
// schema in PRISMA_DML_PATH and talks to it over HTTP with the old GraphQL protocol. The WebAssembly engine takes
// only the JSON protocol, so this file translates: the GraphQL text prisma-client-py's query builder writes (a
// small, regular subset: one aliased field, JSON literals as values, plain selections) becomes a JSON-protocol
// request, and typed JSON-protocol results ({"$type": "DateTime", "value": ...}) become the plain values the
// GraphQL protocol returned. Nothing else is emulated: every query runs in the real engine on the real database.
//
// Environment: PRISMA_WASM_MODULES (a directory whose node_modules holds the pinned npm packages),
// PRISMA_DML_PATH, and DATABASE_URL (the datasource's env var in LiteLLM's schema).
import { createRequire } from 'node:module';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

if (process.argv.includes('--version') || process.argv.includes('version')) {
  // The Prisma CLI and prisma-client-py ask engines for their version; this is the engine commit we wrap.
  console.log(`query-engine ${process.env.PRISMA_WASM_ENGINE_COMMIT ?? 'wasm'}`);
  process.exit(0);
}

const portIndex = process.argv.indexOf('-p');
const port = portIndex > 0 ? Number(process.argv[portIndex + 1]) : NaN;
const modules = process.env.PRISMA_WASM_MODULES;
const dmlPath = process.env.PRISMA_DML_PATH;
const databaseUrl = process.env.DATABASE_URL;
if (!Number.isInteger(port) || !modules || !dmlPath || !databaseUrl) {
  console.error('prisma-wasm-engine: needs -p PORT, PRISMA_WASM_MODULES, PRISMA_DML_PATH and DATABASE_URL');
  process.exit(2);
}

const require = createRequire(path.join(modules, 'package.json'));
const { PrismaPg } = require('@prisma/adapter-pg');
const { bindAdapter } = require('@prisma/driver-adapter-utils');
const pg = require('pg');
const engineDir = path.join(
  path.dirname(require.resolve('@prisma/query-engine-wasm/package.json')),
  'postgresql',
);
const bg = await import(pathToFileURL(path.join(engineDir, 'query_engine_bg.js')).href);
const wasmModule = await WebAssembly.compile(await readFile(path.join(engineDir, 'query_engine_bg.wasm')));
const instance = await WebAssembly.instantiate(wasmModule, { './query_engine_bg.js': bg });
bg.__wbg_set_wasm(instance.exports);

// Catalog types LiteLLM's raw queries read (`name` and `name[]` from pg_views, `"char"` from pg_class) are
// unknown to the adapter's column-type map, which then refuses the whole result. They are text on the wire, so
// results report them as text and text[]: pg parses them that way and the adapter maps them.
const AS_TEXT = new Map([
  [18, 25], // "char" → text
  [19, 25], // name → text
  [1003, 1009], // name[] → text[]
  [1002, 1009], // "char"[] → text[]
]);
const asText = (r) => {
  for (const field of r?.fields ?? []) field.dataTypeID = AS_TEXT.get(field.dataTypeID) ?? field.dataTypeID;
  return r;
};
const query = pg.Client.prototype.query;
pg.Client.prototype.query = function (...args) {
  // pg.Pool passes a callback; the adapter's transactions await a promise.
  const last = args.length - 1;
  if (typeof args[last] === 'function') {
    const callback = args[last];
    args[last] = (err, r) => callback(err, err ? r : asText(r));
    return query.apply(this, args);
  }
  const result = query.apply(this, args);
  return result && typeof result.then === 'function' ? result.then(asText) : result;
};

const pool = new pg.Pool({ connectionString: databaseUrl, max: 10 });
const datamodel = await readFile(dmlPath, 'utf8');
const engine = new bg.QueryEngine(
  { datamodel, logLevel: 'error', logQueries: false },
  (log) => {
    if (process.env.PRISMA_WASM_ENGINE_DEBUG) console.error(log);
  },
  bindAdapter(new PrismaPg(pool)),
);
await engine.connect('{}');

// Json fields of each model, from the schema. The GraphQL protocol took every Json input as JSON text and parsed
// it; the JSON protocol stores a plain string as a JSON string, so Json inputs are sent typed ({$type: 'Json'}).
const JSON_FIELDS = new Map();
for (const [, model, body] of datamodel.matchAll(/^model\s+(\w+)\s*\{([\s\S]*?)^\}/gm)) {
  JSON_FIELDS.set(model, new Set([...body.matchAll(/^\s*(\w+)\s+Json\b/gm)].map((m) => m[1])));
}

/** Wraps the Json fields of written data (`data`, an upsert's `create`/`update`) as typed Json values. */
function typeJsonInputs(modelName, args) {
  const fields = JSON_FIELDS.get(modelName);
  if (!fields || fields.size === 0) return args;
  const wrap = (data) => {
    if (Array.isArray(data)) return data.map(wrap);
    if (!data || typeof data !== 'object') return data;
    const out = { ...data };
    for (const field of fields) {
      const v = out[field];
      if (typeof v === 'string') out[field] = { $type: 'Json', value: v };
      else if (v && typeof v === 'object' && typeof v.set === 'string')
        out[field] = { $type: 'Json', value: v.set };
    }
    return out;
  };
  const out = { ...args };
  for (const key of ['data', 'create', 'update']) if (key in out) out[key] = wrap(out[key]);
  return out;
}

// ---- GraphQL (prisma-client-py's subset) → JSON protocol -------------------------------------------------

/** Splits the query text into tokens: punctuation, names, and JSON literals (strings, numbers). */
function tokenize(text) {
  const tokens = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (/\s|,/.test(c)) {
      i++;
    } else if ('{}()[]:'.includes(c)) {
      tokens.push({ p: c });
      i++;
    } else if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      tokens.push({ v: JSON.parse(text.slice(i, j + 1)) });
      i = j + 1;
    } else {
      const m =
        /^-?\d+(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i)) ?? /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(i));
      if (!m) throw new Error(`cannot read the query at: ${text.slice(i, i + 40)}`);
      const word = m[0];
      if (/^-?\d/.test(word)) tokens.push({ v: Number(word) });
      else if (word === 'true' || word === 'false') tokens.push({ v: word === 'true' });
      else if (word === 'null') tokens.push({ v: null });
      else tokens.push({ n: word });
      i += word.length;
    }
  }
  return tokens;
}

function parser(tokens) {
  let at = 0;
  const peek = () => tokens[at];
  const take = (p) => {
    const t = tokens[at++];
    if (p && t?.p !== p) throw new Error(`expected ${p} in the query`);
    return t;
  };
  const value = () => {
    const t = take();
    if (t.p === '{') {
      const obj = {};
      while (peek().p !== '}') {
        const key = take().n;
        take(':');
        obj[key] = value();
      }
      take('}');
      return obj;
    }
    if (t.p === '[') {
      const list = [];
      while (peek().p !== ']') list.push(value());
      take(']');
      return list;
    }
    if ('v' in t) return t.v;
    return t.n; // a bare enum value
  };
  const args = () => {
    const out = {};
    if (peek()?.p !== '(') return out;
    take('(');
    while (peek().p !== ')') {
      const key = take().n;
      take(':');
      out[key] = value();
    }
    take(')');
    return out;
  };
  const field = () => {
    let name = take().n;
    let alias;
    if (peek()?.p === ':') {
      take(':');
      alias = name;
      name = take().n;
    }
    const a = args();
    const selection = peek()?.p === '{' ? selectionSet() : undefined;
    return { alias, name, args: a, selection };
  };
  const selectionSet = () => {
    take('{');
    const fields = [];
    while (peek().p !== '}') fields.push(field());
    take('}');
    return fields;
  };
  return {
    operation() {
      take(); // query | mutation
      const [root] = selectionSet();
      return root;
    },
  };
}

const ACTIONS = [
  'findUnique', 'findFirst', 'findMany', 'createOne', 'createMany', 'updateOne', 'updateMany',
  'deleteOne', 'deleteMany', 'upsertOne', 'aggregate', 'groupBy',
]; // prettier-ignore

function toJsonSelection(fields) {
  const selection = {};
  for (const f of fields ?? []) {
    if (!f.selection && Object.keys(f.args).length === 0) selection[f.name] = true;
    else {
      const nested = { selection: toJsonSelection(f.selection) };
      if (Object.keys(f.args).length) nested.arguments = f.args;
      selection[f.name] = nested;
    }
  }
  return selection;
}

/** One GraphQL request of prisma-client-py as a JSON-protocol request. */
function toJsonQuery(graphql) {
  const root = parser(tokenize(graphql)).operation();
  if (root.name === 'queryRaw' || root.name === 'executeRaw') {
    return { action: root.name, query: { arguments: root.args, selection: {} } };
  }
  let name = root.name;
  let orThrow = false;
  if (name.endsWith('OrThrow')) {
    orThrow = true;
    name = name.slice(0, -'OrThrow'.length);
  }
  const action = ACTIONS.find((a) => name.startsWith(a));
  if (!action) throw new Error(`unknown operation ${root.name}`);
  const modelName = name.slice(action.length);
  const selection = toJsonSelection(root.selection);
  return {
    modelName,
    action: orThrow ? `${action}OrThrow` : action,
    query: {
      arguments: typeJsonInputs(modelName, root.args),
      selection: Object.keys(selection).length ? selection : { $scalars: true },
    },
  };
}

/** JSON-protocol typed values back to the plain values of the GraphQL protocol (Json stays a JSON string). */
function untype(value) {
  if (Array.isArray(value)) return value.map(untype);
  if (value && typeof value === 'object') {
    if (typeof value.$type === 'string' && 'value' in value) return value.value;
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = untype(v);
    return out;
  }
  return value;
}

/**
 * A raw query's result as the GraphQL protocol of Prisma 5.4 (what prisma-client-py 0.11 reads) gave it: one
 * object per row, each cell `{prisma__type, prisma__value}`, arrays as type `array` of such cells. The newer
 * engine answers `{columns, types, rows}` with types such as `int` and `string-array`.
 */
function rawRows(result) {
  if (!result || !Array.isArray(result.columns)) return result;
  const { columns, types, rows } = result;
  const cell = (type, value) =>
    value === null
      ? { prisma__type: 'null', prisma__value: null } // as the old protocol typed a NULL cell
      : type.endsWith('-array') && Array.isArray(value)
        ? { prisma__type: 'array', prisma__value: value.map((v) => cell(type.slice(0, -'-array'.length), v)) }
        : { prisma__type: type, prisma__value: type === 'json' ? jsonCell(value) : value };
  return rows.map((row) => Object.fromEntries(columns.map((c, i) => [c, cell(types[i], row[i])])));
}

/** The adapter hands JSON cells over as their text; the old protocol gave the parsed value (LiteLLM expects it). */
function jsonCell(value) {
  if (typeof value !== 'string') return value;
  try {
    return JSON.parse(value);
  } catch {
    return value;
  }
}

function toGraphqlResult(action, data) {
  const [result] = Object.values(data ?? {});
  return { data: { result: action === 'queryRaw' ? rawRows(result) : untype(result) } };
}

async function runQuery(body, txId) {
  if (Array.isArray(body.batch)) {
    const batch = body.batch.map((q) => toJsonQuery(q.query));
    const request = { batch, transaction: body.transaction ? {} : undefined };
    const parsed = JSON.parse(await engine.query(JSON.stringify(request), '{}', txId));
    if (parsed.errors) return parsed;
    return {
      batchResult: parsed.batchResult.map((r, i) =>
        r.errors ? r : toGraphqlResult(batch[i].action, r.data),
      ),
    };
  }
  const json = toJsonQuery(body.query);
  if (process.env.PRISMA_WASM_ENGINE_DEBUG) console.error(JSON.stringify(json));
  const parsed = JSON.parse(await engine.query(JSON.stringify(json), '{}', txId));
  return parsed.errors ? parsed : toGraphqlResult(json.action, parsed.data);
}

// ---- HTTP ------------------------------------------------------------------------------------------------

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

const server = http.createServer(async (req, res) => {
  const reply = (status, payload) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(typeof payload === 'string' ? payload : JSON.stringify(payload));
  };
  try {
    const url = req.url ?? '/';
    if (req.method === 'GET' && url === '/status') return reply(200, { status: 'ok' });
    const text = await readBody(req);
    if (url === '/transaction/start') return reply(200, await engine.startTransaction(text, '{}'));
    const tx = /^\/transaction\/([^/]+)\/(commit|rollback)$/.exec(url);
    if (tx) {
      const out =
        tx[2] === 'commit'
          ? await engine.commitTransaction(tx[1], '{}')
          : await engine.rollbackTransaction(tx[1], '{}');
      return reply(200, out);
    }
    if (url === '/metrics') return reply(200, { counters: [], gauges: [], histograms: [] });
    const txId = req.headers['x-transaction-id'];
    return reply(200, await runQuery(JSON.parse(text), typeof txId === 'string' ? txId : undefined));
  } catch (error) {
    if (process.env.PRISMA_WASM_ENGINE_DEBUG) console.error(error);
    return reply(200, { errors: [{ error: String(error?.message ?? error), user_facing_error: {} }] });
  }
});
server.listen(port); // every address: prisma-client-py connects to "localhost"

const stop = async () => {
  server.close();
  await engine.disconnect('{}').catch(() => undefined);
  await pool.end().catch(() => undefined);
  process.exit(0);
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
