// Hash routing (`#/tasks`, `#/admin/plugins`): every path without a hash
// belongs to the API, so the app's own places live after the `#`.

import { useEffect, useState } from 'preact/hooks';

function currentPath(): string {
  return location.hash.replace(/^#/, '') || '/';
}

export function useHashPath(): string {
  const [path, setPath] = useState(currentPath);
  useEffect(() => {
    const update = () => setPath(currentPath());
    window.addEventListener('hashchange', update);
    return () => window.removeEventListener('hashchange', update);
  }, []);
  return path;
}

/** Goes to `path`; `replace` leaves no history entry (a redirect). */
export function navigate(path: string, { replace = false } = {}) {
  if (replace) {
    history.replaceState(null, '', `#${path}`);
    window.dispatchEvent(new HashChangeEvent('hashchange'));
  } else {
    location.hash = path;
  }
}

/** A message for the next page to show (after a sign-up, a password reset). */
let flash: string | null = null;

export function setFlash(message: string) {
  flash = message;
}

export function takeFlash(): string | null {
  const message = flash;
  flash = null;
  return message;
}

/** A hash path split into its path and its query (`/reset?token=…`). */
export function splitPath(hashPath: string): { path: string; params: URLSearchParams } {
  const question = hashPath.indexOf('?');
  if (question === -1) return { path: hashPath, params: new URLSearchParams() };
  return { path: hashPath.slice(0, question), params: new URLSearchParams(hashPath.slice(question + 1)) };
}
