"""The chaos run of scripts/chaos: three replicas of todo-host behind one
address list, a bounded mixed load, and one fault at a time; after each, with
everything back, it checks what was acknowledged against the database.

Invariants it checks, per scenario:
- every acknowledged write is in the database as acknowledged, none twice;
- every 202 command reaches `applied` or `failed`;
- every committed task change has exactly one audit-log entry;
- a 5xx happens only while PostgreSQL is down, and is a problem+json with
  Retry-After;
- every replica is ready within 10 s of the component's return.

The stack (PostgreSQL, Redis, Tansu on PostgreSQL) is started by scripts/chaos,
which hands its coordinates over in the environment. Standard library only.
"""

import argparse
import collections
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

ENV = os.environ
READY_WITHIN = 10.0


def psql(sql):
    out = subprocess.run(["psql", "-qXtA", "-F", "\t", ENV["PG_URL_TODO"], "-c", sql],
                         capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines() if line]


class Replica:
    def __init__(self, index):
        self.index = index
        self.port = int(ENV[f"REPLICA_PORT_{index}"])
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = None
        self.log = open(os.path.join(ENV["CHAOS_WORK"], f"replica-{index}.log"), "a")

    def start(self):
        env = dict(ENV, TODO_LISTEN=f"127.0.0.1:{self.port}")
        self.process = subprocess.Popen([ENV["HOST_BIN"], "serve"], env=env, stdout=self.log,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    def kill9(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def consumers(self):
        """What /health says of the consumer groups (stalled partitions)."""
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=5) as response:
                return json.load(response)["checks"].get("kafka_consumers")
        except urllib.error.HTTPError as error:
            return json.load(error)["checks"].get("kafka_consumers")
        except (urllib.error.URLError, OSError) as error:
            return f"no answer: {error}"

    def ready(self):
        try:
            with urllib.request.urlopen(self.url + "/health/ready", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False


class Stack:
    """The shared components, each of which a scenario may break."""

    def __init__(self):
        self.tansu = None

    def as_postgres(self, *command):
        prefix = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"] if os.geteuid() == 0 else []
        subprocess.run(prefix + list(command), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def crash_postgres(self):
        self.as_postgres(os.path.join(ENV["PG_BIN"], "pg_ctl"), "-D", ENV["PG_DATA"], "-m", "immediate", "stop")

    def start_postgres(self):
        self.as_postgres(os.path.join(ENV["PG_BIN"], "pg_ctl"), "-D", ENV["PG_DATA"], "-l",
                         os.path.join(ENV["PG_DATA"], "server.log"), "-o", ENV["PG_OPTIONS"], "-w", "start")

    def kill_redis(self):
        with open(os.path.join(ENV["REDIS_DIR"], "redis.pid")) as pid:
            os.kill(int(pid.read()), signal.SIGKILL)
        time.sleep(0.2)

    def start_redis(self):
        d = ENV["REDIS_DIR"]
        subprocess.run(["redis-server", "--port", ENV["REDIS_PORT"], "--bind", "127.0.0.1", "--dir", d,
                        "--daemonize", "yes", "--pidfile", os.path.join(d, "redis.pid"),
                        "--logfile", os.path.join(d, "redis.log"), "--appendonly", "yes",
                        "--appendfsync", "everysec"], check=True, stdout=subprocess.DEVNULL)

    def kill_broker(self):
        os.kill(self.broker_pid(), signal.SIGKILL)
        time.sleep(0.2)

    def broker_pid(self):
        if self.tansu:
            return self.tansu.pid
        return int(ENV["TANSU_PID"])

    def start_broker(self):
        url = f"tcp://127.0.0.1:{ENV['KAFKA_PORT']}"
        log = open(os.path.join(ENV["TANSU_DIR"], "tansu.log"), "a")
        self.tansu = subprocess.Popen([ENV["TANSU"], "broker", "--listener-url", url, "--advertised-listener-url", url,
                                       "--storage-engine", ENV["TANSU_STORAGE"]], stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True)


class Load:
    """Mixed traffic over the replicas until stopped: sync and async creates,
    PATCH with If-Match, DELETE, reads. Records what was acknowledged."""

    def __init__(self, replicas, users, rate):
        self.replicas = replicas
        self.users = users
        self.pause = len(users) / rate
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.statuses = collections.Counter()
        self.created = {}        # task id -> title, acknowledged 201
        self.deleted = set()     # task ids, acknowledged 204
        self.updated = {}        # task id -> title, acknowledged 200 (last)
        self.commands = {}       # command id -> title
        self.bad_5xx = []        # 5xx outside a database outage, or without problem/Retry-After
        self.db_down = threading.Event()
        self.failed = 0          # no answer from any replica

    def request(self, method, path, token, body=None, headers=None):
        data = json.dumps(body).encode() if body is not None else None
        for attempt in range(len(self.replicas)):
            replica = random.choice(self.replicas)
            request = urllib.request.Request(replica.url + path, data=data, method=method)
            request.add_header("authorization", "Bearer " + token)
            if data is not None:
                request.add_header("content-type", "application/json")
            for name, value in (headers or {}).items():
                request.add_header(name, value)
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    return response.status, response.headers, response.read()
            except urllib.error.HTTPError as error:
                return error.code, error.headers, error.read()
            except urllib.error.URLError as error:
                if isinstance(error.reason, ConnectionRefusedError):
                    continue  # nothing was sent: the next replica, as a load balancer would
                return None, None, None  # it may have been applied: never resent
            except OSError:
                return None, None, None
        return None, None, None

    def record(self, status, headers, payload):
        with self.lock:
            self.statuses[status or "none"] += 1
            if status is None:
                self.failed += 1
            elif status >= 500:
                problem = headers.get("content-type", "").startswith("application/problem+json")
                if not self.db_down.is_set() or not problem or (status == 503 and "retry-after" not in headers):
                    self.bad_5xx.append((status, payload[:200]))

    def worker(self, user):
        mine = {}  # task id -> version
        while not self.stop.is_set():
            roll = random.random()
            if roll < 0.30 or not mine:
                title = f"sync {uuid.uuid4()}"
                status, headers, payload = self.request("POST", "/tasks", user, {"title": title})
                self.record(status, headers, payload)
                if status == 201:
                    task = json.loads(payload)
                    with self.lock:
                        self.created[task["id"]] = title
                    mine[task["id"]] = task["version"]
            elif roll < 0.45:
                title = f"async {uuid.uuid4()}"
                status, headers, payload = self.request("POST", "/tasks", user, {"title": title},
                                                        {"prefer": "respond-async"})
                self.record(status, headers, payload)
                if status == 202:
                    with self.lock:
                        self.commands[json.loads(payload)["id"]] = title
                elif status == 201:  # applied at once: the broker did not take it
                    task = json.loads(payload)
                    with self.lock:
                        self.created[task["id"]] = title
            elif roll < 0.60:
                task_id, version = random.choice(list(mine.items()))
                title = f"patched {uuid.uuid4()}"
                status, headers, payload = self.request("PATCH", f"/tasks/{task_id}", user, {"title": title},
                                                        {"if-match": f'"{version}"'})
                self.record(status, headers, payload)
                if status == 200:
                    mine[task_id] = json.loads(payload)["version"]
                    with self.lock:
                        self.updated[task_id] = title
                elif status == 412:
                    mine[task_id] = int(headers.get("etag", '"0"').strip('"'))
            elif roll < 0.70:
                task_id = random.choice(list(mine))
                status, headers, payload = self.request("DELETE", f"/tasks/{task_id}", user)
                self.record(status, headers, payload)
                if status in (204, 404):
                    mine.pop(task_id)
                if status == 204:
                    with self.lock:
                        self.deleted.add(task_id)
            else:
                status, headers, payload = self.request("GET", "/tasks?limit=20", user)
                self.record(status, headers, payload)
            time.sleep(self.pause)


def check(load, started_outbox):
    """Compares what was acknowledged with the database, once quiet."""
    rows = dict(psql("SELECT id, title FROM plugin_postgres_store.tasks"))
    dup = psql("SELECT count(*) FROM (SELECT title FROM plugin_postgres_store.tasks GROUP BY title HAVING count(*) > 1) d")
    with load.lock:
        created, deleted, updated, commands = dict(load.created), set(load.deleted), dict(load.updated), dict(load.commands)
    lost = [i for i in created if i not in deleted and i not in rows]
    wrong = [i for i, title in updated.items() if i not in deleted and rows.get(i) not in (title, None)]
    found = sum(1 for i in created if i in rows or i in deleted)
    deadline = time.time() + 60
    while True:
        finished = dict(psql("SELECT id, status FROM command_results WHERE status <> 'withdrawn'"))
        stuck = [c for c in commands if c not in finished]
        if not stuck or time.time() > deadline:
            break
        time.sleep(1)
    applied = sum(1 for c in commands if c in finished)
    deadline = time.time() + 60
    while True:
        expected = psql(f"SELECT count(*) FROM outbox WHERE id > {started_outbox} AND topic = 'task-events' "
                        "AND convert_from(payload, 'UTF8')::jsonb ->> 'type' IN ('task.created', 'task.updated', 'task.deleted')")[0][0]
        audited = psql(f"SELECT count(*) FROM plugin_audit_log.task_audit a JOIN outbox o "
                       f"ON convert_from(o.payload, 'UTF8')::jsonb ->> 'id' = a.event_id WHERE o.id > {started_outbox}")[0][0]
        if expected == audited or time.time() > deadline:
            break
        time.sleep(1)
    return {
        "writes": f"{len(created)}/{found}/{len(lost)}/{dup[0][0]}",
        "wrong": len(wrong),
        "commands": f"{len(commands)}/{applied}/{len(commands) - applied}",
        "audit": f"{expected}/{audited}",
        "ok": not lost and dup[0][0] == "0" and not wrong and applied == len(commands) and expected == audited
              and not load.bad_5xx,
    }


def wait_ready(replicas, since):
    deadline = since + 60
    while time.time() < deadline:
        if all(replica.ready() for replica in replicas):
            return time.time() - since
        time.sleep(0.1)
    return None


def scenario(name, replicas, stack, users, args, fault):
    started_outbox = int(psql("SELECT coalesce(max(id), 0) FROM outbox")[0][0])
    load = Load(replicas, users, args.rate)
    threads = [threading.Thread(target=load.worker, args=(user,), daemon=True) for user in users]
    for thread in threads:
        thread.start()
    time.sleep(args.warmup)
    returned = fault(load)
    ready_after = wait_ready(replicas, returned)
    time.sleep(args.after)
    load.stop.set()
    for thread in threads:
        thread.join(timeout=60)
    result = check(load, started_outbox)
    result["ok"] = result["ok"] and ready_after is not None and ready_after <= READY_WITHIN
    statuses = " ".join(f"{k}:{v}" for k, v in sorted(load.statuses.items(), key=lambda kv: str(kv[0])))
    requests = sum(load.statuses.values())
    ready = f"{ready_after:.1f} s" if ready_after is not None else "never"
    print(f"{name:<28} | {requests:>8} | {statuses:<48} | {result['writes']:<27} | "
          f"{result['commands']:<31} | {result['audit']:<20} | {len(load.bad_5xx):>5} | {ready:<8} | "
          f"{'ok' if result['ok'] else 'FAILED'}", flush=True)
    for replica in replicas:
        if replica.process.poll() is not None:
            print(f"    replica {replica.index} exited with {replica.process.returncode} (negative: killed by that signal)",
                  file=sys.stderr)
            replica.start()
    if not result["ok"]:
        for replica in replicas:
            print(f"    replica {replica.index}: {replica.consumers()}", file=sys.stderr)
    for status, payload in load.bad_5xx[:5]:
        print(f"    unexpected {status}: {payload!r}", file=sys.stderr)
    return result["ok"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenarios", default="kill-replica,restart-redis,restart-broker,crash-postgres,reload")
    parser.add_argument("--rate", type=float, default=300, help="requests per second over all replicas")
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--outage", type=float, default=3)
    parser.add_argument("--after", type=float, default=10)
    args = parser.parse_args()

    replicas = [Replica(i) for i in range(3)]
    stack = Stack()
    for replica in replicas:
        replica.start()
    if wait_ready(replicas, time.time()) is None:
        sys.exit("the replicas did not become ready")
    users = ENV["CHAOS_TOKENS"].split()
    admin = ENV["CHAOS_ADMIN_TOKEN"]

    def kill_replica(load):
        replicas[0].kill9()
        time.sleep(args.outage)
        replicas[0].start()
        return time.time()

    def restart_redis(load):
        stack.kill_redis()
        time.sleep(args.outage)
        stack.start_redis()
        return time.time()

    def restart_broker(load):
        stack.kill_broker()
        time.sleep(args.outage)
        stack.start_broker()
        return time.time()

    def crash_postgres(load):
        load.db_down.set()
        stack.crash_postgres()
        time.sleep(args.outage)
        stack.start_postgres()
        returned = time.time()
        # Requests already in flight when it came back may still fail.
        threading.Timer(5, load.db_down.clear).start()
        return returned

    def reload(load):
        reloads = 0
        until = time.time() + args.outage * 3
        while time.time() < until:
            request = urllib.request.Request(replicas[reloads % 3].url + "/admin/plugins/reload?name=postgres-store",
                                             method="POST", headers={"authorization": "Bearer " + admin})
            urllib.request.urlopen(request, timeout=30).read()
            reloads += 1
        return time.time()

    faults = {"kill-replica": kill_replica, "restart-redis": restart_redis, "restart-broker": restart_broker,
              "crash-postgres": crash_postgres, "reload": reload}
    print(f"{'scenario':<28} | {'requests':>8} | {'by status':<48} | {'writes acked/found/lost/dup':<27} | "
          f"{'commands accepted/applied/stuck':<31} | {'audit expected/found':<20} | {'bad5xx':>5} | ready    | verdict")
    ok = True
    try:
        for name in args.scenarios.split(","):
            ok = scenario(name, replicas, stack, users, args, faults[name]) and ok
    finally:
        for replica in replicas:
            replica.stop()
        if stack.tansu:
            stack.tansu.terminate()
            stack.tansu.wait()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
