#!/usr/bin/env bash
# Apache Kafka (jars from Maven Central) as a single KRaft node (broker+controller) on
# 127.0.0.1:9092, controller 127.0.0.1:9093, data in .local/kafka/data. Topics are not created here.
# Another instance beside it (the fault suite's): KAFKA_NAME names its directory, pid and log; KAFKA_PORT and
# KAFKA_CONTROLLER_PORT its ports; KAFKA_EXTRA_LISTENER (host:port) one more listener, advertised as itself.
# Usage: scripts/kafka.sh install|start|stop|status
set -euo pipefail
KAFKA_NAME=${KAFKA_NAME:-kafka}
COMPONENT=$KAFKA_NAME
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

KAFKA_VERSION=${KAFKA_VERSION:-4.4.0}
KAFKA_DIR=$LOCAL/$KAFKA_NAME
LIBS=$LOCAL/kafka/libs-$KAFKA_VERSION # the jars are shared by every instance
DATA=$KAFKA_DIR/data
PROPS=$KAFKA_DIR/server.properties
LOG4J=$KAFKA_DIR/log4j2.properties
CLUSTER_ID_FILE=$KAFKA_DIR/cluster.id
KAFKA_LOG=$LOG_DIR/$KAFKA_NAME.log
PORT=${KAFKA_PORT:-9092}
CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-9093}
EXTRA=${KAFKA_EXTRA_LISTENER:-}
START_TIMEOUT=90
PY=python3
[[ -x $ROOT/.venv/bin/python ]] && PY=$ROOT/.venv/bin/python

java_cp() { java -cp "$LIBS/*" -Dlog4j2.configurationFile="$LOG4J" "$@"; }

install() {
  [[ -f $LIBS/.complete ]] && return
  if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
    ((EUID == 0)) || die "java 17+ and maven are needed"
    log "installing java and maven (apt)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless maven; } \
      >>"$KAFKA_LOG" 2>&1 || die "apt-get install default-jre-headless maven failed"
  fi
  log "installing kafka_2.13:$KAFKA_VERSION into $LIBS (maven)"
  rm -rf "$LIBS.tmp"
  mvn -q -B -f "$ROOT/scripts/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
    dependency:copy-dependencies -DoutputDirectory="$LIBS.tmp" >>"$KAFKA_LOG" 2>&1 || die "maven could not fetch Kafka $KAFKA_VERSION"
  touch "$LIBS.tmp/.complete"
  rm -rf "$LIBS" && mv "$LIBS.tmp" "$LIBS"
}

write_config() {
  mkdir -p "$DATA"
  local listeners="PLAINTEXT://127.0.0.1:$PORT" map="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
  [[ -z $EXTRA ]] || { listeners+=",EXTRA://$EXTRA"; map+=",EXTRA:PLAINTEXT"; }
  cat >"$PROPS" <<EOF
# Written by scripts/kafka.sh on every start: single-node dev/test cluster on loopback.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$CONTROLLER_PORT
listeners=$listeners,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=$listeners,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
listener.security.protocol.map=$map
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$DATA
num.partitions=6
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=false
delete.topic.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.io.threads=4
num.network.threads=2
log.retention.hours=24
log.retention.check.interval.ms=300000
EOF
  cat >"$LOG4J" <<EOF
status = warn
shutdownHook = disable
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = $KAFKA_LOG
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
logger.controller.name = org.apache.kafka.controller
logger.controller.level = WARN
EOF
}

# Format the log dir once, with a cluster id generated once and kept in .local/kafka/cluster.id.
format_once() {
  [[ -f $DATA/meta.properties ]] && return
  [[ -s $CLUSTER_ID_FILE ]] || java_cp kafka.tools.StorageTool random-uuid >"$CLUSTER_ID_FILE" 2>>"$KAFKA_LOG" ||
    die "could not generate a cluster id"
  log "formatting $DATA (cluster id $(cat "$CLUSTER_ID_FILE"))"
  java_cp kafka.tools.StorageTool format --config "$PROPS" --cluster-id "$(cat "$CLUSTER_ID_FILE")" \
    --standalone --ignore-formatted >>"$KAFKA_LOG" 2>&1 || die "kafka storage format failed"
}

running() { is_running "$KAFKA_NAME" "$PROPS"; }

# Ready = port open and the broker lists itself in a metadata response (when confluent_kafka is importable).
broker_ready() {
  port_open 127.0.0.1 "$PORT" || return 1
  "$PY" -c 'import confluent_kafka' 2>/dev/null || { sleep 3; return 0; }
  "$PY" - "$PORT" <<'EOF' 2>/dev/null
import sys
from confluent_kafka.admin import AdminClient
md = AdminClient({"bootstrap.servers": f"127.0.0.1:{sys.argv[1]}"}).list_topics(timeout=5)
sys.exit(0 if md.brokers else 1)
EOF
}

start() {
  if running; then
    broker_ready || die "pid $(cat "$(pid_file "$KAFKA_NAME")") is running but the broker does not answer on $PORT"
    log "already running on 127.0.0.1:$PORT"
    return
  fi
  local port
  for port in "$PORT" "$CONTROLLER_PORT"; do
    ! port_open 127.0.0.1 "$port" || die "port $port is already taken by another process"
  done
  [[ ! -f $KAFKA_LOG ]] || mv -f "$KAFKA_LOG" "$KAFKA_LOG.1" # the log holds this run; the previous one is kept
  install
  write_config
  format_once
  log "starting Kafka $KAFKA_VERSION on 127.0.0.1:$PORT (log: $KAFKA_LOG)"
  # A fixed 1 GiB heap, as Kafka's own guidance has it (Xms = Xmx): with 256m growing to 768m the old generation
  # sat near G1's threshold and a concurrent cycle ran every half minute (54 in 30 min of tests and benchmarks),
  # taking a sixth of a core from the API beside it, with the acknowledgements it delays.
  nohup setsid java -Xms1g -Xmx1g -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$LOG4J" \
    -cp "$LIBS/*" kafka.Kafka "$PROPS" >>"$KAFKA_LOG" 2>&1 </dev/null 9>&- &
  echo $! >"$(pid_file "$KAFKA_NAME")"
  local deadline=$((SECONDS + START_TIMEOUT))
  until broker_ready; do
    running || die "Kafka exited during start-up"
    ((SECONDS < deadline)) || die "Kafka not ready on 127.0.0.1:$PORT after ${START_TIMEOUT}s"
    sleep 1
  done
  log "ready: 127.0.0.1:$PORT"
}

stop() {
  if ! running; then
    log "not running"
    rm -f "$(pid_file "$KAFKA_NAME")"
    return
  fi
  local pid deadline=$((SECONDS + 30))
  pid=$(cat "$(pid_file "$KAFKA_NAME")")
  kill -TERM "$pid"
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then
    log "pid $pid ignored SIGTERM for 30s, sending SIGKILL"
    kill -KILL "$pid"
    sleep 1
  fi
  rm -f "$(pid_file "$KAFKA_NAME")"
  log "stopped"
}

case ${1:-} in
  install) lock kafka && install ;;
  start) lock "$KAFKA_NAME" && start ;;
  stop) lock "$KAFKA_NAME" && stop ;;
  status) if running; then log "running on 127.0.0.1:$PORT"; else log "not running"; exit 3; fi ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
