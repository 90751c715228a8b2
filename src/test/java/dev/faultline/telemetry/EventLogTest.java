package dev.faultline.telemetry;

import static org.junit.jupiter.api.Assertions.*;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class EventLogTest {
    @Test
    void shouldWriteOneBoundedJsonObjectPerLineToAFileOfMode0600(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("events.jsonl");
        try (EventLog log = EventLog.open(f.toString())) {
            log.emit("connection", "vm", "vm-1", "peer_pid", 42, "ok", true, "ms", 1.23456);
            log.emit("failure", "reason", "x".repeat(10_000) + "\n\"}{", "nothing", null);
        }
        List<String> lines = Files.readAllLines(f);
        assertEquals(2, lines.size());
        ObjectMapper m = new ObjectMapper();
        JsonNode a = m.readTree(lines.get(0)), b = m.readTree(lines.get(1));
        assertEquals("connection", a.get("event").asText());
        assertEquals(42, a.get("peer_pid").asInt());
        assertEquals(1.235, a.get("ms").asDouble());
        assertEquals(EventLog.MAX_STRING + 3, b.get("reason").asText().length(), "a long field is cut");
        assertTrue(b.get("nothing").isNull());
        assertEquals("rw-------", java.nio.file.attribute.PosixFilePermissions.toString(Files.getPosixFilePermissions(f)));
    }

    @Test
    void shouldRefuseAnEventFileThatIsASymbolicLinkOrNotARegularFile(@TempDir Path dir) throws Exception {
        Path target = dir.resolve("t");
        Files.writeString(target, "");
        Path link = dir.resolve("l");
        Files.createSymbolicLink(link, target);
        assertThrows(IllegalArgumentException.class, () -> EventLog.open(link.toString()));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> EventLog.open(dir.toString())).getMessage().contains("not a regular file"));
        assertEquals(0, Files.size(target));
    }
}
