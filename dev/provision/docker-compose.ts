import { installDebianPackage, run, which } from './run.js';

const COMPOSE_DIRS = ['/usr/bin', '/usr/local/bin', '/usr/libexec/docker/cli-plugins'];

/** True when `command args` exits 0 (no Docker engine needed for `version`). */
async function works(command: string, args: readonly string[]): Promise<boolean> {
  try {
    await run(command, args);
    return true;
  } catch {
    return false;
  }
}

/**
 * Returns the command that runs Docker Compose, e.g. `['/usr/bin/docker', 'compose']` or
 * `['/usr/bin/docker-compose']`: the `docker compose` plugin when the Docker CLI has it, else `docker-compose` on
 * PATH, else installs Debian's `docker-compose` package when running as root with apt, else fails with what to
 * install. None of this needs a running Docker engine.
 */
export async function ensureDockerCompose(): Promise<string[]> {
  const docker = await which('docker');
  if (docker && (await works(docker, ['compose', 'version']))) return [docker, 'compose'];
  const found = await which('docker-compose', COMPOSE_DIRS);
  if (found && (await works(found, ['version']))) return [found];
  if (await installDebianPackage('docker-compose')) {
    const installed = await which('docker-compose', COMPOSE_DIRS);
    if (installed && (await works(installed, ['version']))) return [installed];
  }
  throw new Error(
    'Docker Compose is not installed: install the Docker Compose plugin (docker compose) ' +
      'or docker-compose (apt-get install docker-compose, brew install docker-compose)',
  );
}

/** The version `compose` reports, e.g. `2.29.7` or `1.29.2`. */
export async function dockerComposeVersion(compose: readonly string[]): Promise<string> {
  const [command, ...prefix] = compose;
  if (!command) throw new Error('empty Docker Compose command');
  const out = await run(command, [...prefix, 'version', '--short']);
  return out.trim().replace(/^v/, '');
}
