import { connect, isIP, type Socket } from 'node:net';
import tls from 'node:tls';
import type { TemporalTarget } from './connection.js';

/** How long the diagnosis may take after a failed connection: one TCP connect and one TLS handshake. */
const PROBE_TIMEOUT_MS = 3_000;

/** The HTTP/2 connection preface and an empty SETTINGS frame: what a gRPC client sends first. */
const HTTP2_PREFACE = Buffer.concat([
  Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'),
  Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]),
]);

/** Certificate checks that fail because no trusted CA signed the chain (Node's codes from OpenSSL). */
const UNTRUSTED = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_UNTRUSTED',
]);

/** What a TLS handshake (or a plain TCP connect) ended with. */
type ProbeResult =
  | { readonly outcome: 'accepted' }
  | { readonly outcome: 'failed'; readonly code: string; readonly message: string };

/**
 * Why a connection to Temporal failed, when the transport says so, as advice naming the settings to change; or
 * `undefined` when the transport works (the failure lies beyond it) or cannot be probed. The SDK's own error says
 * only "Failed to connect before the deadline" (client) or a Rust error chain (worker): this repeats the connection
 * with Node's TLS, which reports the certificate check or the TLS alert that failed. Never includes key material.
 */
export async function diagnoseTransport(target: TemporalTarget): Promise<string | undefined> {
  const endpoint = parseAddress(target.address);
  if (!endpoint) return undefined;
  const tlsOptions = target.options?.tls;
  if (!tlsOptions) {
    const plain = await probe(endpoint, undefined);
    if (plain.outcome === 'accepted') return undefined;
    if ((await probe(endpoint, { rejectUnauthorized: false })).outcome === 'accepted') {
      return (
        'the server requires TLS: set TEMPORAL_TLS=true, and TEMPORAL_TLS_SERVER_CA_CERT_PATH to the CA ' +
        "certificate that signed the server's certificate unless a public CA did"
      );
    }
    return unreachable(plain);
  }
  const settings = tlsOptions === true ? {} : tlsOptions;
  const name = settings.serverNameOverride ?? endpoint.host;
  const result = await probe(endpoint, {
    // SNI carries host names only; the certificate is checked against the name either way.
    servername: isIP(name) ? undefined : name,
    checkServerIdentity: (_host, cert) => tls.checkServerIdentity(name, cert),
    ca: settings.serverRootCACertificate ? Buffer.from(settings.serverRootCACertificate) : undefined,
    cert: settings.clientCertPair ? Buffer.from(settings.clientCertPair.crt) : undefined,
    key: settings.clientCertPair ? Buffer.from(settings.clientCertPair.key) : undefined,
  });
  if (result.outcome === 'accepted') return undefined;
  const { code } = result;
  if (UNTRUSTED.has(code)) {
    return (
      `the server's certificate is not trusted (${result.message}): set TEMPORAL_TLS_SERVER_CA_CERT_PATH to the ` +
      'CA certificate that signed it'
    );
  }
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') {
    return `the server's certificate is not valid now (${result.message}): the server needs a current certificate`;
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return (
      `the server's certificate is not valid for the name ${name}: set TEMPORAL_TLS_SERVER_NAME to a name it ` +
      'was issued for'
    );
  }
  if (code === 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED' && !settings.clientCertPair) {
    return (
      'the server requires a client certificate (mutual TLS): set TEMPORAL_TLS_CLIENT_CERT_PATH and ' +
      'TEMPORAL_TLS_CLIENT_KEY_PATH'
    );
  }
  if (
    /_ALERT_(UNKNOWN_CA|BAD_CERTIFICATE|CERTIFICATE_UNKNOWN|UNSUPPORTED_CERTIFICATE|ACCESS_DENIED|CERTIFICATE_REQUIRED)$/.test(
      code,
    )
  ) {
    return (
      `the server refused the client certificate (${alertName(code)}): set TEMPORAL_TLS_CLIENT_CERT_PATH and ` +
      'TEMPORAL_TLS_CLIENT_KEY_PATH to a certificate signed by a CA the server trusts'
    );
  }
  if ((await probe(endpoint, undefined)).outcome === 'accepted') {
    return 'the server does not serve TLS: set TEMPORAL_TLS=false, or TEMPORAL_ADDRESS to its TLS port';
  }
  return unreachable(result);
}

/** Advice for a server that cannot be reached at all, or an unexplained handshake failure. */
function unreachable(result: { code: string; message: string }): string | undefined {
  if (result.code === 'ECONNREFUSED') {
    return 'nothing accepts connections there (ECONNREFUSED): is the server running? Check TEMPORAL_ADDRESS';
  }
  if (result.code === 'ENOTFOUND' || result.code === 'EAI_AGAIN') {
    return `the host name does not resolve (${result.code}): check TEMPORAL_ADDRESS`;
  }
  return undefined;
}

/** `ERR_SSL_TLSV1_ALERT_UNKNOWN_CA` → `unknown ca`. */
function alertName(code: string): string {
  return code
    .replace(/^.*ALERT_/, '')
    .toLowerCase()
    .replaceAll('_', ' ');
}

function parseAddress(address: string): { host: string; port: number } | undefined {
  const match = /^\[?([^\]]+?)\]?:(\d+)$/.exec(address);
  if (!match) return undefined;
  return { host: match[1]!, port: Number(match[2]) };
}

/**
 * One connection, over TLS with `tlsOptions` or in plaintext without, sending the HTTP/2 preface: a gRPC server
 * answers with its own SETTINGS frame once it has accepted us. TLS 1.3 servers refuse a client certificate after the
 * handshake, with an alert that arrives on the first read.
 */
function probe(
  endpoint: { host: string; port: number },
  tlsOptions: tls.ConnectionOptions | undefined,
): Promise<ProbeResult> {
  return new Promise((resolve) => {
    let received = Buffer.alloc(0);
    const done = (result: ProbeResult) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(
      () => done({ outcome: 'failed', code: 'ETIMEDOUT', message: 'no answer' }),
      PROBE_TIMEOUT_MS,
    );
    let socket: Socket;
    try {
      socket = tlsOptions
        ? tls.connect({ ...endpoint, ALPNProtocols: ['h2'], ...tlsOptions }, () =>
            socket.write(HTTP2_PREFACE),
          )
        : connect(endpoint, () => socket.write(HTTP2_PREFACE));
    } catch {
      // A certificate or key that is not PEM fails here, before any connection; the SDK's error says so.
      clearTimeout(timer);
      resolve({ outcome: 'failed', code: 'EINVAL', message: 'unusable TLS settings' });
      return;
    }
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      // A frame header is 9 bytes; its fourth is the type, 4 for SETTINGS. Anything else (a TLS alert record
      // read in plaintext) is not a gRPC server accepting us.
      if (received.length >= 9) {
        done(
          received[3] === 4
            ? { outcome: 'accepted' }
            : { outcome: 'failed', code: 'EPROTO', message: 'not an HTTP/2 answer' },
        );
      }
    });
    socket.once('error', (error: NodeJS.ErrnoException) =>
      done({ outcome: 'failed', code: error.code ?? 'EPROTO', message: error.message.split('\n', 1)[0]! }),
    );
    socket.once('close', () => done({ outcome: 'failed', code: 'ECONNRESET', message: 'connection closed' }));
  });
}
