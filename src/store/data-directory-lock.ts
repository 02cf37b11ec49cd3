import { readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { StartupRefused } from '../startup.ts';

const LOCK_FILE = 'dossier.lock';

interface LockHolder {
  pid: number;
  host: string;
}

/**
 * One server per PGlite data directory: PGlite does no locking of its own, and two processes writing one
 * directory lose acknowledged writes. The lock is a file created exclusively in the directory, naming the
 * owner's pid and host; a lock whose owner is gone (a server killed by SIGKILL or a crash) is taken over.
 * Returns the release, which removes the file (when it is still this process's).
 */
export function lockDataDirectory(dir: string): () => void {
  const path = join(dir, LOCK_FILE);
  const self: LockHolder = { pid: process.pid, host: hostname() };
  for (;;) {
    try {
      writeFileSync(path, JSON.stringify(self), { flag: 'wx' });
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const holder = readHolder(path);
    if (holder && isAlive(holder)) {
      const where = holder.host === self.host ? `process ${holder.pid}` : `process ${holder.pid} on host ${holder.host}`;
      throw new StartupRefused(
        `the data directory ${dir} is in use by another server (${where}): a PGlite store belongs to one process; stop that server, or if it is gone for sure, delete ${path}`,
      );
    }
    removeIfPresent(path);
  }
  return () => {
    if (readHolder(path)?.pid === self.pid) removeIfPresent(path);
  };
}

/** The lock's owner; undefined when the file is gone or holds no owner (its writer died between create and write). */
function readHolder(path: string): LockHolder | undefined {
  try {
    const holder = JSON.parse(readFileSync(path, 'utf8')) as Partial<LockHolder>;
    return typeof holder.pid === 'number' && typeof holder.host === 'string' ? { pid: holder.pid, host: holder.host } : undefined;
  } catch {
    return undefined;
  }
}

function isAlive(holder: LockHolder): boolean {
  // Another machine's process cannot be checked from here (a directory on a shared volume): assume it runs.
  if (holder.host !== hostname()) return true;
  // This very pid holds no lock yet, so the file is from an earlier process that had the same pid (a
  // container restarted: its server is pid 1 every time).
  if (holder.pid === process.pid) return false;
  try {
    process.kill(holder.pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, under another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function removeIfPresent(path: string): void {
  try {
    unlinkSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}
