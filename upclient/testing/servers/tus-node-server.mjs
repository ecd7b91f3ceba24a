#!/usr/bin/env node
// Runs the reference tus server (@tus/server + @tus/file-store) for upclient's
// test harness (upclient.testing.TusNodeServer). It ships inside the upclient
// package; the two npm packages do not, so it is told where they are.
//
// Usage:
//   node tus-node-server.mjs [--dir DIR] [--port N] [--host H] [--path /files]
//                            [--expiration-ms MS] [--max-size BYTES]
//                            [--relative-location]
//                            [--tls-cert PEM --tls-key PEM [--tls-client-ca PEM]]
//                            [--node-modules DIR]
//   node tus-node-server.mjs DIR [PORT]
//
// Every option may also come from the environment: TUS_DIR, TUS_PORT,
// TUS_HOST, TUS_PATH, TUS_EXPIRATION_MS, TUS_MAX_SIZE, TUS_RELATIVE_LOCATION=1,
// TUS_TLS_CERT, TUS_TLS_KEY, TUS_TLS_CLIENT_CA, TUS_NODE_MODULES.
//
// --node-modules names the node_modules directory that holds @tus/server and
// @tus/file-store (ES modules ignore NODE_PATH, so the packages are loaded
// from there by path); without it they resolve from this script's own place.
// Defaults: port 0 (a free port), host 127.0.0.1, path /files, expiration one
// hour (so Upload-Expires is sent; 0 disables it), no maximum size, plain HTTP.
//
// With --tls-cert and --tls-key it serves HTTPS (node's https module) and an
// absolute Location is https://; with --tls-client-ca too, a client must
// present a certificate signed by that CA (mutual TLS) or its handshake fails.
//
// Once listening it prints exactly one line to stdout: the creation URL, e.g.
// `http://127.0.0.1:PORT/files/` (`https://` with TLS). Diagnostics go to
// stderr. SIGTERM or SIGINT closes the listener and every open connection,
// then exits with status 0.

import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import process from 'node:process';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

function fail(message) {
  process.stderr.write(`tus-node-server: ${message}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const opts = {
    dir: process.env.TUS_DIR,
    port: process.env.TUS_PORT,
    host: process.env.TUS_HOST,
    path: process.env.TUS_PATH,
    expirationMs: process.env.TUS_EXPIRATION_MS,
    maxSize: process.env.TUS_MAX_SIZE,
    tlsCert: process.env.TUS_TLS_CERT,
    tlsKey: process.env.TUS_TLS_KEY,
    tlsClientCa: process.env.TUS_TLS_CLIENT_CA,
    nodeModules: process.env.TUS_NODE_MODULES,
    relativeLocation: ['1', 'true', 'yes'].includes(
      (process.env.TUS_RELATIVE_LOCATION || '').toLowerCase(),
    ),
  };
  const positional = [];
  const valued = {
    '--dir': 'dir',
    '--port': 'port',
    '--host': 'host',
    '--path': 'path',
    '--expiration-ms': 'expirationMs',
    '--max-size': 'maxSize',
    '--tls-cert': 'tlsCert',
    '--tls-key': 'tlsKey',
    '--tls-client-ca': 'tlsClientCa',
    '--node-modules': 'nodeModules',
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--relative-location') {
      opts.relativeLocation = true;
      continue;
    }
    if (arg === '-h' || arg === '--help') {
      process.stdout.write(
        'usage: tus-node-server.mjs [--dir DIR] [--port N] [--host H] [--path /files] ' +
          '[--expiration-ms MS] [--max-size BYTES] [--relative-location] ' +
          '[--tls-cert PEM --tls-key PEM [--tls-client-ca PEM]] [--node-modules DIR]\n',
      );
      process.exit(0);
    }
    const eq = arg.indexOf('=');
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    if (name in valued) {
      let value;
      if (eq > 0) {
        value = arg.slice(eq + 1);
      } else {
        if (i + 1 >= argv.length) fail(`${name} needs a value`);
        value = argv[++i];
      }
      opts[valued[name]] = value;
      continue;
    }
    if (arg.startsWith('--')) fail(`unknown option ${arg}`);
    positional.push(arg);
  }
  if (positional.length > 0) opts.dir = positional[0];
  if (positional.length > 1) opts.port = positional[1];
  if (positional.length > 2) fail('too many arguments');

  if (!opts.dir) fail('no upload directory (--dir DIR or TUS_DIR)');
  opts.dir = path.resolve(opts.dir);
  opts.host = opts.host || '127.0.0.1';

  const port = Number.parseInt(opts.port ?? '0', 10);
  if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`bad port ${opts.port}`);
  opts.port = port;

  let route = opts.path || '/files';
  if (!route.startsWith('/')) route = `/${route}`;
  route = route.replace(/\/+$/, '');
  opts.path = route || '/';

  const expiration = Number.parseInt(opts.expirationMs ?? '3600000', 10);
  if (!Number.isInteger(expiration) || expiration < 0) fail(`bad expiration ${opts.expirationMs}`);
  opts.expirationMs = expiration;

  const maxSize = Number.parseInt(opts.maxSize ?? '0', 10);
  if (!Number.isInteger(maxSize) || maxSize < 0) fail(`bad max size ${opts.maxSize}`);
  opts.maxSize = maxSize;

  if (Boolean(opts.tlsCert) !== Boolean(opts.tlsKey)) fail('--tls-cert and --tls-key go together');
  if (opts.tlsClientCa && !opts.tlsCert) fail('--tls-client-ca needs --tls-cert and --tls-key');
  opts.tls = Boolean(opts.tlsCert);
  return opts;
}

// Node 20's web-streams bridge, which @tus/server 2.x uses for request
// bodies, can throw "ReadableStream is already closed" from a microtask when
// a client closes an idle keep-alive connection after a request with a body.
// The request was already answered; only the process would die. Keep serving
// and say so; any other uncaught error still ends the process.
process.on('uncaughtException', (err) => {
  if (err && err.code === 'ERR_INVALID_STATE' && /already closed/.test(String(err.message))) {
    process.stderr.write(`tus-node-server: ignored a stream-close race in Node (${err.message})\n`);
    return;
  }
  process.stderr.write(`tus-node-server: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});

const opts = parseArgs(process.argv.slice(2));

// A package of the given node_modules directory, or resolved from here.
async function load(name) {
  if (!opts.nodeModules) return import(name);
  const from = createRequire(path.join(path.resolve(opts.nodeModules), 'noop.js'));
  let file;
  try {
    file = from.resolve(name);
  } catch (err) {
    return fail(`${name} is not in ${opts.nodeModules} (${err.message})`);
  }
  return import(pathToFileURL(file).href);
}

const { FileStore } = await load('@tus/file-store');
const { Server } = await load('@tus/server');

const datastore = new FileStore({
  directory: opts.dir,
  expirationPeriodInMilliseconds: opts.expirationMs,
});

const scheme = opts.tls ? 'https' : 'http';

const tus = new Server({
  path: opts.path,
  datastore,
  // Location is absolute (built from the request's Host header) unless asked
  // otherwise, so a client talking through a proxy gets the proxy's address.
  relativeLocation: opts.relativeLocation,
  // @tus/server says http:// unless told by forwarded headers; over TLS the
  // scheme is ours to give.
  generateUrl: opts.tls && !opts.relativeLocation
    ? (req, { host, path: route, id }) => `https://${host}${route}/${id}`
    : undefined,
  maxSize: opts.maxSize > 0 ? opts.maxSize : undefined,
});

function readPem(file) {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    return fail(`cannot read ${file}: ${err.message}`);
  }
}

const handler = tus.handle.bind(tus);
const httpServer = opts.tls
  ? https.createServer(
      {
        cert: readPem(opts.tlsCert),
        key: readPem(opts.tlsKey),
        ...(opts.tlsClientCa
          ? { ca: readPem(opts.tlsClientCa), requestCert: true, rejectUnauthorized: true }
          : {}),
      },
      handler,
    )
  : http.createServer(handler);
httpServer.listen({ host: opts.host, port: opts.port });

// A client that fails its handshake (an unknown CA, no client certificate)
// is refused and logged; the server keeps serving.
httpServer.on('tlsClientError', (err) => {
  process.stderr.write(`tus-node-server: TLS handshake failed: ${err.message}\n`);
});

httpServer.on('error', (err) => {
  process.stderr.write(`tus-node-server: ${err.stack || err}\n`);
  process.exit(1);
});

httpServer.on('listening', () => {
  const { port } = httpServer.address();
  const hostForUrl = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  const route = opts.path === '/' ? '/' : `${opts.path}/`;
  process.stdout.write(`${scheme}://${hostForUrl}:${port}${route}\n`);
  process.stderr.write(
    `tus-node-server: @tus/server listening on ${hostForUrl}:${port}, ` +
      `directory ${opts.dir}, expiration ${opts.expirationMs} ms` +
      (opts.tls ? `, TLS${opts.tlsClientCa ? ' with client certificates' : ''}` : '') +
      '\n',
  );
});

let stopping = false;
function stop(signal) {
  if (stopping) return;
  stopping = true;
  process.stderr.write(`tus-node-server: ${signal} received, stopping\n`);
  httpServer.close(() => process.exit(0));
  // Open keep-alive connections would otherwise hold close() open.
  if (typeof httpServer.closeAllConnections === 'function') {
    httpServer.closeAllConnections();
  }
  // Never hang on shutdown.
  setTimeout(() => process.exit(0), 2000).unref();
}

process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
