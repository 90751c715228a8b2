package dev.faultline.migration;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.type.TypeReference;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.util.Map;

/** The JSON of RESULT and VERDICT messages. */
final class JsonText {
    private JsonText() {}

    private static final ObjectMapper MAPPER = new ObjectMapper();

    static String write(Object tree) {
        try {
            return MAPPER.writeValueAsString(tree);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("cannot render JSON: " + e.getMessage(), e);
        }
    }

    static Map<String, Object> read(String json, String what) {
        try {
            return MAPPER.readValue(json, new TypeReference<Map<String, Object>>() { });
        } catch (JsonProcessingException e) {
            throw new ProtocolException(what + " is not valid JSON: " + e.getOriginalMessage());
        }
    }
}
