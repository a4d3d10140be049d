#!/usr/bin/env bash
# A one-node Apache Cassandra 5.0 on 127.0.0.1:9042 for the metadata backend's tests and for
# `sdfbs dev --metadata scylla:...`, assembled from Maven Central (no Docker, no tarball).
#
#   scripts/cassandra.sh start    resolve the jars (once), write the config, start the node with a
#                                 fresh data directory, return once it answers CQL
#   scripts/cassandra.sh stop     end the node (SIGTERM) and wait until it is gone
#   scripts/cassandra.sh status   exit 0 and print `up` if the node answers CQL, else exit 1
#
# Environment:
#   SDFBS_CASSANDRA_DIR      where the jars, config, data and log live
#                            (default: $HOME/.cache/sdfbs-cassandra)
#   SDFBS_CASSANDRA_VERSION  cassandra-all version (default 5.0.6)
#   SDFBS_CASSANDRA_HEAP     heap size (default 1g)
#   JAVA_HOME                a Java 17 (default: the java 17 on PATH); Cassandra 5.0 runs on 11
#                            and 17 only, and JDK 24+ cannot allow the SecurityManager it installs
#
# Readiness is checked with the project's own CQL client (the `cql_ping` example of the
# metadata crate), so nothing beyond Java, Maven and cargo is needed.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
C="${SDFBS_CASSANDRA_DIR:-$HOME/.cache/sdfbs-cassandra}"
VERSION="${SDFBS_CASSANDRA_VERSION:-5.0.6}"
HEAP="${SDFBS_CASSANDRA_HEAP:-1g}"
HOST=127.0.0.1
PORT=9042
PIDFILE="$C/cassandra.pid"
LOG="$C/logs/console.log"

log() { echo "cassandra.sh: $*" >&2; }

java_bin() {
  if [ -n "${JAVA_HOME:-}" ]; then echo "$JAVA_HOME/bin/java"; return; fi
  for j in /usr/lib/jvm/java-17-openjdk-amd64/bin/java /usr/lib/jvm/java-17-openjdk-arm64/bin/java; do
    [ -x "$j" ] && { echo "$j"; return; }
  done
  command -v java
}

# Resolves cassandra-all and its runtime dependencies into $C/lib with a throw-away pom.
resolve_jars() {
  if [ -f "$C/lib/.resolved-$VERSION" ]; then return; fi
  log "resolving org.apache.cassandra:cassandra-all:$VERSION from Maven Central"
  rm -rf "$C/lib" "$C/resolve"
  mkdir -p "$C/lib" "$C/resolve"
  cat > "$C/resolve/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>sdfbs</groupId><artifactId>cassandra-node</artifactId><version>1</version>
  <dependencies>
    <dependency>
      <groupId>org.apache.cassandra</groupId><artifactId>cassandra-all</artifactId>
      <version>$VERSION</version>
    </dependency>
  </dependencies>
</project>
POM
  mvn -B -q -f "$C/resolve/pom.xml" \
    org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
    -DoutputDirectory="$C/lib" -DincludeScope=runtime
  touch "$C/lib/.resolved-$VERSION"
}

write_config() {
  mkdir -p "$C/conf" "$C/logs"
  cat > "$C/conf/cassandra.yaml" <<YAML
# One node on loopback, for tests and local development (written by scripts/cassandra.sh).
cluster_name: sdfbs-test
num_tokens: 1
initial_token: 0
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "$HOST:7000"
listen_address: $HOST
rpc_address: $HOST
storage_port: 7000
native_transport_port: $PORT
start_native_transport: true
data_file_directories:
  - $C/data
commitlog_directory: $C/commitlog
saved_caches_directory: $C/saved_caches
hints_directory: $C/hints
cdc_raw_directory: $C/cdc_raw
commitlog_sync: periodic
commitlog_sync_period: 10000ms
auto_snapshot: false
hinted_handoff_enabled: false
concurrent_compactors: 1
concurrent_reads: 8
concurrent_writes: 16
concurrent_counter_writes: 8
# Paxos v2 needs fewer round trips per lightweight transaction than v1.
paxos_variant: v2
# A test suite creates and drops many keyspaces: keep DDL fast.
auto_bootstrap: false
authenticator: AllowAllAuthenticator
authorizer: AllowAllAuthorizer
# The commit log and memtables of a test node stay small.
commitlog_segment_size: 8MiB
memtable_heap_space: 128MiB
memtable_offheap_space: 128MiB
key_cache_size: 16MiB
read_request_timeout: 10000ms
write_request_timeout: 10000ms
cas_contention_timeout: 5000ms
request_timeout: 20000ms
YAML
  cat > "$C/conf/logback.xml" <<XML
<configuration scan="false">
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>$C/logs/system.log</file>
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="FILE"/></root>
  <logger name="org.apache.cassandra" level="INFO"/>
</configuration>
XML
}

# The Java 17 module flags, from Cassandra 5.0's conf/jvm17-server.options.
JVM17_FLAGS=(
  --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
  --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
  --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
  --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
  --add-exports java.sql/java.sql=ALL-UNNAMED
  --add-exports java.base/java.lang.ref=ALL-UNNAMED
  --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
  --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
  --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
  --add-opens java.base/java.lang.module=ALL-UNNAMED
  --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
  --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
  --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
  --add-opens java.base/jdk.internal.math=ALL-UNNAMED
  --add-opens java.base/jdk.internal.module=ALL-UNNAMED
  --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
  --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
  --add-opens java.base/sun.nio.ch=ALL-UNNAMED
  --add-opens java.base/java.io=ALL-UNNAMED
  --add-opens java.base/java.lang.reflect=ALL-UNNAMED
  --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
  --add-opens java.base/java.lang=ALL-UNNAMED
  --add-opens java.base/java.util=ALL-UNNAMED
  -Dio.netty.tryReflectionSetAccessible=true
  -Dio.netty.allocator.useCacheForAllThreads=true
  -Dio.netty.allocator.maxOrder=11
)

running_pid() {
  [ -f "$PIDFILE" ] || return 1
  local pid
  pid="$(cat "$PIDFILE")"
  kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

# The project's own CQL ping: `SELECT release_version FROM system.local` with the scylla driver.
cql_ping_bin() {
  local bin="$ROOT/target/debug/examples/cql_ping"
  if [ ! -x "$bin" ]; then
    (cd "$ROOT" && cargo build -q -p sdfbs-metadata --example cql_ping) >&2
  fi
  echo "$bin"
}

answers_cql() {
  "$(cql_ping_bin)" "$HOST:$PORT" >/dev/null 2>&1
}

start() {
  if pid="$(running_pid)"; then
    log "already running (pid $pid)"
    wait_ready
    return
  fi
  resolve_jars
  write_config
  # A fresh node every start: no data, commit log, hints or caches of an earlier run.
  rm -rf "$C/data" "$C/commitlog" "$C/saved_caches" "$C/hints" "$C/cdc_raw"
  local java jamm
  java="$(java_bin)"
  jamm="$(ls "$C"/lib/jamm-*.jar | head -n1)"
  log "starting Cassandra $VERSION with $java (log: $C/logs/system.log)"
  # setsid: the node outlives this script and the shell that ran it, until `stop`.
  setsid "$java" -Xms"$HEAP" -Xmx"$HEAP" -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError -Xss512k -ea \
    -javaagent:"$jamm" "${JVM17_FLAGS[@]}" \
    -Djava.net.preferIPv4Stack=true -Djdk.attach.allowAttachSelf=true \
    -Dcassandra-foreground=yes \
    -Dcassandra.config="file://$C/conf/cassandra.yaml" \
    -Dcassandra.storagedir="$C" \
    -Dcassandra.logdir="$C/logs" \
    -Dlogback.configurationFile="$C/conf/logback.xml" \
    -Dcassandra.skip_wait_for_gossip_to_settle=0 \
    -Dcassandra.load_ring_state=false \
    -Dcassandra.jmx.local.port=7199 \
    -cp "$C/conf:$C/lib/*" org.apache.cassandra.service.CassandraDaemon \
    >"$LOG" 2>&1 </dev/null &
  echo $! > "$PIDFILE"
  wait_ready
}

wait_ready() {
  local started deadline pid
  started=$(date +%s)
  deadline=$((started + ${SDFBS_CASSANDRA_START_TIMEOUT:-240}))
  cql_ping_bin >/dev/null
  while :; do
    if answers_cql; then
      log "up on $HOST:$PORT after $(( $(date +%s) - started )) s"
      return 0
    fi
    if ! pid="$(running_pid)"; then
      log "the node exited before it answered CQL; last lines of its logs:"
      tail -n 30 "$LOG" >&2 || true
      tail -n 30 "$C/logs/system.log" >&2 2>/dev/null || true
      return 1
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "no CQL answer on $HOST:$PORT within the timeout; last lines of its log:"
      tail -n 30 "$C/logs/system.log" >&2 2>/dev/null || true
      return 1
    fi
    sleep 1
  done
}

stop() {
  local pid
  if ! pid="$(running_pid)"; then
    log "not running"
    rm -f "$PIDFILE"
    return 0
  fi
  kill -TERM "$pid"
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$PIDFILE"; log "stopped"; return 0; }
    sleep 1
  done
  log "still running 60 s after SIGTERM; killing it"
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$PIDFILE"
}

status() {
  if running_pid >/dev/null && answers_cql; then
    echo up
  else
    echo down
    return 1
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
