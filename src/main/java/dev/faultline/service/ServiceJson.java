package dev.faultline.service;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.type.TypeReference;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.util.Map;

/** The service's wire format: one JSON object per line, each way (UTF-8, no line breaks inside). */
final class ServiceJson {
    private ServiceJson() {}

    private static final ObjectMapper MAPPER = new ObjectMapper();

    static String line(Map<String, Object> tree) {
        try {
            return MAPPER.writeValueAsString(tree);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("cannot render JSON: " + e.getMessage(), e);
        }
    }

    /** @throws IllegalArgumentException when {@code line} is not one JSON object */
    static Map<String, Object> object(String line) {
        try {
            return MAPPER.readValue(line, new TypeReference<Map<String, Object>>() {});
        } catch (JsonProcessingException e) {
            throw new IllegalArgumentException("not a JSON object: " + e.getOriginalMessage());
        }
    }
}
