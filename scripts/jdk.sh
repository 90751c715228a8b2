# Sourced by ./faultline and ./test: sets JAVA_HOME to a JDK 25+ or exits with a clear message.
java_major() { # feature version of the java binary $1, or 0
  local v
  v="$("$1" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = //p' | head -1)"
  echo "${v:-0}"
}

find_jdk() {
  if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" && -x "$JAVA_HOME/bin/javac" ]]; then
    if (( $(java_major "$JAVA_HOME/bin/java") >= 25 )); then echo "$JAVA_HOME"; return 0; fi
  fi
  local d best="" bestv=0 v
  for d in /usr/lib/jvm/*; do
    [[ -x "$d/bin/java" && -x "$d/bin/javac" ]] || continue
    v="$(java_major "$d/bin/java")"
    if (( v >= 25 && v > bestv )); then best="$d"; bestv="$v"; fi
  done
  [[ -n "$best" ]] && echo "$best"
}

require_jdk() {
  local jdk
  jdk="$(find_jdk || true)"
  if [[ -z "$jdk" ]]; then
    echo "faultline: needs a JDK 25 or newer (java.lang.foreign). Set JAVA_HOME to one, or install one under /usr/lib/jvm (for example Temurin 25)." >&2
    exit 2
  fi
  export JAVA_HOME="$jdk"
}

require_mvn() {
  if ! command -v mvn >/dev/null 2>&1; then
    echo "faultline: Apache Maven (mvn) is needed to build; install it (apt-get install maven)." >&2
    exit 2
  fi
}
