package dev.faultline.telemetry;

import java.io.IOException;
import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.channels.Channels;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.LinkOption;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Instant;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * A stream of events as JSON lines (one object per line, UTF-8) for a platform to follow: connections,
 * restores (start, first instruction, end), migration phases, failures. Each line has {@code ts} (ISO-8601
 * UTC), {@code event} and the event's fields; strings are cut to {@link #MAX_STRING} characters and
 * at most {@link #MAX_FIELDS} fields are written, so no input can make a line unbounded. Lines are
 * written whole (one write per line, under a lock: events are rare, never per fault).
 *
 * <p>A file is opened for appending without following a symbolic link, created with mode 0600, and
 * must be a regular file; "-" is standard output.
 */
public final class EventLog implements AutoCloseable {
    public static final int MAX_STRING = 512, MAX_FIELDS = 32;

    /** Writes nothing. */
    public static final EventLog NONE = new EventLog(null, "none");

    private final OutputStream out;
    private final String where;
    private boolean failed;

    private EventLog(OutputStream out, String where) {
        this.out = out;
        this.where = where;
    }

    /**
     * Opens {@code target}: "-" for standard output, else a file path (appended to).
     * @throws IllegalArgumentException one line naming the file and the reason
     */
    public static EventLog open(String target) {
        if (target.equals("-")) return new EventLog(new PrintStream(new java.io.FileOutputStream(java.io.FileDescriptor.out), true), "stdout");
        Path p = Path.of(target);
        try {
            if (Files.exists(p, LinkOption.NOFOLLOW_LINKS) && !Files.isRegularFile(p, LinkOption.NOFOLLOW_LINKS)) {
                throw new IllegalArgumentException("event file " + p + " exists and is not a regular file");
            }
            FileChannel ch = FileChannel.open(p, java.util.Set.of(StandardOpenOption.CREATE, StandardOpenOption.APPEND, StandardOpenOption.WRITE,
                    LinkOption.NOFOLLOW_LINKS), PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rw-------")));
            return new EventLog(Channels.newOutputStream(ch), p.toString());
        } catch (IOException e) {
            throw new IllegalArgumentException("event file " + p + " cannot be opened: " + e.getMessage(), e);
        }
    }

    public boolean enabled() { return out != null; }

    /** One event: {@code fields} are name, value pairs (values: strings, numbers, booleans, null). */
    public void emit(String event, Object... fields) {
        if (out == null) return;
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("ts", Instant.now().toString());
        m.put("event", event);
        for (int i = 0; i + 1 < fields.length && m.size() < MAX_FIELDS; i += 2) m.put(String.valueOf(fields[i]), fields[i + 1]);
        write(line(m));
    }

    static String line(Map<String, Object> m) {
        StringBuilder b = new StringBuilder(128).append('{');
        boolean first = true;
        for (Map.Entry<String, Object> e : m.entrySet()) {
            if (!first) b.append(',');
            first = false;
            string(b, e.getKey());
            b.append(':');
            Object v = e.getValue();
            if (v == null) b.append("null");
            else if (v instanceof Boolean || v instanceof Integer || v instanceof Long) b.append(v);
            else if (v instanceof Number n) {
                double d = n.doubleValue();
                b.append(Double.isFinite(d) ? String.valueOf(Math.round(d * 1000) / 1000.0) : "null");
            } else string(b, String.valueOf(v));
        }
        return b.append("}\n").toString();
    }

    private static void string(StringBuilder b, String s) {
        if (s.length() > MAX_STRING) s = s.substring(0, MAX_STRING) + "...";
        b.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"' -> b.append("\\\"");
                case '\\' -> b.append("\\\\");
                case '\n' -> b.append("\\n");
                case '\r' -> b.append("\\r");
                case '\t' -> b.append("\\t");
                default -> {
                    if (c < 0x20 || (c >= 0x7f && c < 0xa0) || Character.isSurrogate(c)) b.append(String.format("\\u%04x", (int) c));
                    else b.append(c);
                }
            }
        }
        b.append('"');
    }

    private synchronized void write(String line) {
        if (failed) return;
        try {
            out.write(line.getBytes(StandardCharsets.UTF_8));
            out.flush();
        } catch (IOException e) {
            failed = true; // a full disk must not stop the handler; said once on stderr
            System.err.println("faultline: events to " + where + " stopped: " + e.getMessage());
        }
    }

    @Override
    public synchronized void close() {
        if (out == null || where.equals("stdout")) return;
        try {
            out.close();
        } catch (IOException ignored) {
            // the events written so far are flushed line by line already
        }
    }
}
