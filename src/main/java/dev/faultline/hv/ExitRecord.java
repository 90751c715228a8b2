package dev.faultline.hv;

import java.util.Map;

/** An immutable copy of one exit: its reason name and its fields as report strings (hex for addresses). */
public record ExitRecord(String reason, Map<String, String> fields) {
    public ExitRecord {
        fields = java.util.Collections.unmodifiableMap(new java.util.LinkedHashMap<>(fields));
    }

    @Override
    public String toString() {
        return fields.isEmpty() ? reason : reason + " " + fields;
    }
}
