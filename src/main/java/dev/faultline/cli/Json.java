package dev.faultline.cli;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import java.io.PrintStream;

/** The one way commands print their --json object: pretty, ordered as built, on stdout. */
public final class Json {
    private Json() {}

    private static final ObjectMapper MAPPER = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

    public static String write(Object tree) {
        try {
            return MAPPER.writeValueAsString(tree);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("cannot render JSON: " + e.getMessage(), e);
        }
    }

    public static void print(PrintStream out, Object tree) {
        out.println(write(tree));
        out.flush();
    }

    public static ObjectMapper mapper() {
        return MAPPER;
    }

    public static String hex(long v) {
        return "0x" + Long.toHexString(v);
    }
}
