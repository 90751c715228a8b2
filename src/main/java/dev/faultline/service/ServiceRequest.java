package dev.faultline.service;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.JsonToken;
import dev.faultline.paging.Prefetch;
import dev.faultline.snapshot.Restore;
import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * One request to the restore service: a JSON object on one line.
 * <pre>
 * {"op": "restore", "dir": "/abs/snapshot", "mode": "lazy", "backend": "kvm", "verify": "on-touch",
 *  "prefetch": "readahead", "handlers": 1, "delivery": "uffd", "timeout_s": 300}
 * {"op": "status"}
 * {"op": "stop"}
 * </pre>
 * {@code op} defaults to "restore"; a restore needs {@code dir} (absolute: the service's working
 * directory is not the client's) and {@code mode}; the rest default as {@code faultline restore}'s
 * options do, the backend to the service's own. Parsed with jackson-core's streaming parser (no
 * ObjectMapper on the path from request to first instruction).
 *
 * @param prefetch the prefetch a lazy restore was asked for (the report names it)
 */
public record ServiceRequest(Op op, Path dir, Restore.Options options, Prefetch prefetch) {
    public enum Op { RESTORE, STATUS, STOP }

    /** Every field a request may have, in the order the error for an unknown one lists them. */
    static final List<String> FIELDS = List.of("op", "dir", "mode", "backend", "verify", "prefetch", "handlers", "delivery", "timeout_s",
            "record_working_set", "record_ms");

    private static final JsonFactory PARSERS = new JsonFactory();

    /** A request that cannot be served as written; the message names the field at fault. */
    public static final class BadRequestException extends RuntimeException {
        private static final long serialVersionUID = 1L;

        BadRequestException(String message) { super(message); }
    }

    /**
     * @param defaultBackend the backend of a request that names none
     * @throws BadRequestException naming what is wrong: not JSON, not an object, an unknown field, a
     *         field of the wrong type or value, a missing field
     */
    public static ServiceRequest parse(String line, String defaultBackend) {
        Map<String, Object> f = fields(line);
        String op = text(f, "op", "restore");
        switch (op) {
            case "status", "stop" -> {
                if (f.size() > 1) throw new BadRequestException("a " + op + " request has no other fields, got " + f.keySet());
                return new ServiceRequest(op.equals("status") ? Op.STATUS : Op.STOP, null, null, null);
            }
            case "restore" -> { }
            default -> throw new BadRequestException("op is restore, status or stop, not '" + op + "'");
        }
        String dirName = text(f, "dir", null);
        if (dirName == null) throw new BadRequestException("a restore request needs dir, the snapshot directory");
        Path dir = Path.of(dirName);
        if (!dir.isAbsolute()) {
            throw new BadRequestException("dir '" + dirName + "' is relative; the service resolves nothing against its own working directory");
        }
        String modeName = text(f, "mode", null);
        if (modeName == null) throw new BadRequestException("a restore request needs mode, lazy or eager");
        Restore.Mode mode = named("mode", () -> Restore.Mode.named(modeName));
        String verifyName = text(f, "verify", null);
        Restore.Verify verify = verifyName == null ? null : named("verify", () -> Restore.Verify.named(verifyName));
        if (mode == Restore.Mode.EAGER && verify == Restore.Verify.ON_FIRST_TOUCH) {
            throw new BadRequestException("verify on-touch is for lazy restores; an eager restore verifies every chunk upfront");
        }
        String recordName = text(f, "record_working_set", null);
        Path record = recordName == null ? null : Path.of(recordName);
        if (record != null && !record.isAbsolute()) throw new BadRequestException("record_working_set '" + recordName + "' is relative; the service resolves nothing against its own working directory");
        long recordMs = integer(f, "record_ms", 0, 0, 86_400_000);
        if (f.containsKey("record_ms") && record == null) throw new BadRequestException("record_ms needs record_working_set");
        String prefetchName = text(f, "prefetch", record != null ? "none" : "readahead");
        if (prefetchName.startsWith("replay:") && !Path.of(prefetchName.substring("replay:".length())).isAbsolute()) {
            throw new BadRequestException("prefetch replay:FILE needs an absolute FILE; the service resolves nothing against its own working directory");
        }
        Prefetch prefetch;
        try {
            prefetch = named("prefetch", () -> Restore.prefetchNamed(prefetchName));
        } catch (dev.faultline.paging.PageSourceException e) {
            throw new BadRequestException("prefetch: " + e.getMessage());
        }
        long handlers = integer(f, "handlers", 1, 1, 64);
        String deliveryName = text(f, "delivery", null);
        Restore.Delivery delivery = deliveryName == null ? null : named("delivery", () -> Restore.Delivery.named(deliveryName));
        if (delivery != null && mode == Restore.Mode.EAGER) throw new BadRequestException("delivery is for lazy restores; an eager restore pages nothing");
        if (delivery == Restore.Delivery.EXIT && handlers > 1) {
            throw new BadRequestException("handlers " + handlers + " with delivery exit: each vCPU serves its own faults and one handler "
                    + "thread serves host threads' faults only");
        }
        long timeout = integer(f, "timeout_s", 300, 1, 86_400);
        String backend = text(f, "backend", defaultBackend);
        Restore.Options o;
        try {
            o = new Restore.Options(backend, mode, verify, prefetch, (int) handlers, Duration.ofSeconds(timeout), null)
                    .withDelivery(delivery).withRecording(record == null ? null : new Restore.Recording(record, recordMs));
        } catch (IllegalArgumentException e) {
            throw new BadRequestException(e.getMessage());
        }
        return new ServiceRequest(Op.RESTORE, dir, o, prefetch);
    }

    /** The request for {@code dir} with these options, as one line of JSON (what a client sends). */
    public static String restoreLine(Path dir, Restore.Mode mode, String backend, Restore.Verify verify, String prefetch, int handlers,
                                     String delivery, long timeoutSeconds) {
        return restoreLine(dir, mode, backend, verify, prefetch, handlers, delivery, timeoutSeconds, null, 0);
    }

    /** ... recording the working set to {@code recordWorkingSet} (absolute; null: no recording) for its first {@code recordMs} (0: the whole run). */
    public static String restoreLine(Path dir, Restore.Mode mode, String backend, Restore.Verify verify, String prefetch, int handlers,
                                     String delivery, long timeoutSeconds, Path recordWorkingSet, long recordMs) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("op", "restore");
        m.put("dir", dir.toAbsolutePath().normalize().toString());
        m.put("mode", mode.label());
        if (backend != null) m.put("backend", backend);
        if (verify != null) m.put("verify", verify.label());
        m.put("prefetch", prefetch);
        m.put("handlers", handlers);
        if (delivery != null) m.put("delivery", delivery);
        m.put("timeout_s", timeoutSeconds);
        if (recordWorkingSet != null) {
            m.put("record_working_set", recordWorkingSet.toString());
            if (recordMs > 0) m.put("record_ms", recordMs);
        }
        return ServiceJson.line(m);
    }

    private static Map<String, Object> fields(String line) {
        Map<String, Object> f = new LinkedHashMap<>();
        try (JsonParser p = PARSERS.createParser(line)) {
            if (p.nextToken() != JsonToken.START_OBJECT) throw new BadRequestException("a request is one JSON object on one line");
            for (JsonToken t = p.nextToken(); t != JsonToken.END_OBJECT; t = p.nextToken()) {
                String name = p.currentName();
                if (!FIELDS.contains(name)) throw new BadRequestException("unknown field '" + name + "'; a request has " + String.join(", ", FIELDS));
                if (f.containsKey(name)) throw new BadRequestException("field " + name + " is given twice");
                JsonToken v = p.nextToken();
                f.put(name, switch (v) {
                    case VALUE_STRING -> p.getText();
                    case VALUE_NUMBER_INT -> p.getNumberType() == JsonParser.NumberType.BIG_INTEGER ? Long.MAX_VALUE : p.getLongValue();
                    default -> throw new BadRequestException("field " + name + " must be a string or a whole number, not " + kind(v));
                });
            }
            JsonToken after = p.nextToken();
            if (after != null) throw new BadRequestException("more after the request's object (" + kind(after) + "); one request per line");
        } catch (JsonProcessingException e) {
            throw new BadRequestException("not valid JSON: " + e.getOriginalMessage());
        } catch (IOException e) {
            throw new BadRequestException("not valid JSON: " + e.getMessage());
        }
        return f;
    }

    private static String kind(JsonToken t) {
        return switch (t) {
            case START_OBJECT -> "an object";
            case START_ARRAY -> "an array";
            case VALUE_NUMBER_FLOAT -> "a fraction";
            case VALUE_TRUE, VALUE_FALSE -> "a boolean";
            case VALUE_NULL -> "null";
            default -> t.asString() == null ? t.name() : "'" + t.asString() + "'";
        };
    }

    private static String text(Map<String, Object> f, String name, String otherwise) {
        Object v = f.get(name);
        if (v == null) return otherwise;
        if (v instanceof String s) return s;
        throw new BadRequestException("field " + name + " must be a string, not the number " + v);
    }

    private static long integer(Map<String, Object> f, String name, long otherwise, long min, long max) {
        Object v = f.get(name);
        if (v == null) return otherwise;
        if (!(v instanceof Long n)) throw new BadRequestException("field " + name + " must be a whole number, not the string '" + v + "'");
        if (n < min || n > max) throw new BadRequestException("field " + name + " must be from " + min + " to " + max + ", got " + n);
        return n;
    }

    private interface Naming<T> { T get(); }

    private static <T> T named(String field, Naming<T> n) {
        try {
            return n.get();
        } catch (IllegalArgumentException e) {
            throw new BadRequestException("field " + field + " is " + e.getMessage());
        }
    }
}
