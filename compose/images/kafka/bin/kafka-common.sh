# Shared by kafka-entrypoint and zookeeper-entrypoint (sourced, not run).
# JVM and logging settings read from the same variables Confluent's images read.
CP='/opt/kafka/libs/*'

# The JVM's logging: everything to stdout so `docker compose logs` shows it.
# KAFKA_LOG4J_ROOT_LOGLEVEL=WARN, KAFKA_LOG4J_LOGGERS="kafka.controller=WARN,state.change.logger=WARN".
write_log4j() { # $1 = file
  {
    echo "log4j.rootLogger=${KAFKA_LOG4J_ROOT_LOGLEVEL:-INFO}, stdout"
    echo "log4j.appender.stdout=org.apache.log4j.ConsoleAppender"
    echo "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout"
    echo "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n"
    local pair
    IFS=',' read -ra pairs <<<"${KAFKA_LOG4J_LOGGERS:-}"
    for pair in "${pairs[@]}"; do
      [ -n "$pair" ] && echo "log4j.logger.${pair%%=*}=${pair#*=}"
    done
  } >"$1"
}

# java options: heap, GC, JMX (only the server opens the JMX port; the CLI
# tools do not, so `docker compose exec kafka kafka-topics …` never clashes).
java_opts() { # $1 = default heap
  JAVA_OPTS=(${KAFKA_HEAP_OPTS:-$1})
  JAVA_OPTS+=(${KAFKA_JVM_PERFORMANCE_OPTS:--server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true})
  if [ -n "${KAFKA_JMX_PORT:-}" ]; then
    JAVA_OPTS+=(${KAFKA_JMX_OPTS:--Dcom.sun.management.jmxremote=true -Dcom.sun.management.jmxremote.authenticate=false -Dcom.sun.management.jmxremote.ssl=false})
    JAVA_OPTS+=("-Dcom.sun.management.jmxremote.port=$KAFKA_JMX_PORT" "-Dcom.sun.management.jmxremote.rmi.port=$KAFKA_JMX_PORT"
                "-Djava.rmi.server.hostname=${KAFKA_JMX_HOSTNAME:-$(hostname)}")
  fi
  JAVA_OPTS+=(${KAFKA_OPTS:-})
}
