import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const exec = promisify(execFile);
const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/** PEM files: a certificate and its private key. */
export interface CertificateFiles {
  readonly cert: string;
  readonly key: string;
}

/** A throwaway CA made with openssl, valid two days, in `<dir>/<name>.crt` and `.key`. */
export async function createCa(dir: string, name: string): Promise<CertificateFiles> {
  const files = { cert: path.join(dir, `${name}.crt`), key: path.join(dir, `${name}.key`) };
  await exec('openssl', [
    ...['req', '-x509', ...EC_KEY, '-keyout', files.key, '-out', files.cert],
    ...['-days', '2', '-subj', `/CN=budget-lifecycle test CA ${name}`],
  ]);
  return files;
}

/**
 * A certificate `ca` signed, in `<dir>/<name>.crt` and `.key`: for a server, valid for each of `hosts` (IP
 * addresses and DNS names); for a client, usable for client authentication only.
 */
export async function issueCertificate(
  dir: string,
  ca: CertificateFiles,
  name: string,
  use: { server: readonly string[] } | { client: true },
): Promise<CertificateFiles> {
  const file = (suffix: string) => path.join(dir, `${name}.${suffix}`);
  const files = { cert: file('crt'), key: file('key') };
  const extensions =
    'server' in use
      ? `subjectAltName=${use.server.map((host) => (/^[\d.]+$/.test(host) ? `IP:${host}` : `DNS:${host}`)).join(',')}\n` +
        'extendedKeyUsage=serverAuth\n'
      : 'extendedKeyUsage=clientAuth\n';
  await writeFile(file('ext'), extensions);
  const subject = 'server' in use ? (use.server.find((h) => !/^[\d.]+$/.test(h)) ?? name) : name;
  await exec('openssl', [
    'req',
    ...EC_KEY,
    '-keyout',
    files.key,
    '-out',
    file('csr'),
    '-subj',
    `/CN=${subject}`,
  ]);
  await exec('openssl', [
    ...['x509', '-req', '-in', file('csr'), '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial'],
    ...['-days', '2', '-extfile', file('ext'), '-out', files.cert],
  ]);
  return files;
}
