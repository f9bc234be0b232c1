# The browser app (web/): Node.js, Debian's Chromium for its browser tests,
# and its build. Source it after common.sh (it uses `log`, `apt_install`
# and `ROOT`); do not run it.

# ensure_node: node >= 18 and npm, from Debian's packages when missing or too old.
ensure_node() {
  local major=0
  if command -v node >/dev/null; then
    major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
  fi
  if [ "$major" -lt 18 ] || ! command -v npm >/dev/null; then
    apt_install nodejs npm
    major=$(node -p 'process.versions.node.split(".")[0]')
    [ "$major" -ge 18 ] || { log "node $major is too old for web/ (it needs 18 or newer)"; exit 1; }
  fi
}

# ensure_chromium: Debian's Chromium, which the browser tests drive
# (Playwright downloads no browser of its own).
ensure_chromium() {
  [ -x /usr/bin/chromium ] || apt_install chromium
}

# build_web: installs web/'s pinned packages when missing or older than the
# lock file, type-checks, builds web/dist and prints its path.
build_web() {
  ensure_node
  local web=$ROOT/web
  if [ ! -d "$web/node_modules" ] || [ "$web/package-lock.json" -nt "$web/node_modules" ]; then
    log "installing web/'s packages (npm ci)"
    (cd "$web" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >&2)
    # npm ci keeps the directory's old time when nothing else changed it.
    touch "$web/node_modules"
  fi
  (cd "$web" && npm run --silent check >&2)
  (cd "$web" && npm run --silent build >&2)
  echo "$web/dist"
}
