package dev.faultline.service;

import static org.junit.jupiter.api.Assertions.*;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.faultline.telemetry.EventLog;
import dev.faultline.telemetry.PagingMetrics;
import io.prometheus.metrics.model.snapshots.CounterSnapshot;
import io.prometheus.metrics.model.snapshots.MetricSnapshot;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The restore service's events and metrics: each restore's start, first instruction and end, and its faults in the totals. */
class ServiceTelemetryTest {
    @Test
    void shouldReportEachRestoreAsEventsAndCountItsFaults(@TempDir Path tmp) throws Exception {
        RestoreServiceTest.take("ref", tmp.resolve("snap"));
        Path events = tmp.resolve("events.jsonl");
        PagingMetrics metrics = new PagingMetrics();
        try (EventLog log = EventLog.open(events.toString());
             RestoreService s = RestoreService.start(new RestoreService.Config(tmp.resolve("rs.sock"), "ref", 0, 0, 0, line -> { }, log, metrics));
             RestoreClient c = RestoreClient.connect(tmp.resolve("rs.sock"))) {
            assertEquals("ref", s.backend());
            Map<String, Object> r = c.send(RestoreServiceTest.request(tmp.resolve("snap"), "lazy"));
            assertEquals(true, r.get("ok"), r.toString());
            Map<?, ?> st = c.send("{\"op\":\"restore\",\"dir\":\"/nonexistent\",\"mode\":\"lazy\"}");
            assertEquals(false, st.get("ok"));
            long faults = ((Number) ((Map<?, ?>) r.get("paging")).get("faults")).longValue();
            assertTrue(faults > 0);
            double total = -1;
            for (MetricSnapshot m : metrics.collect()) {
                if (m.getMetadata().getName().equals("faultline_faults")) total = ((CounterSnapshot) m).getDataPoints().getFirst().getValue();
            }
            assertEquals(faults, (long) total, "the ended restore's faults are in the totals");
        }
        ObjectMapper json = new ObjectMapper();
        List<JsonNode> lines = Files.readAllLines(events).stream().map(l -> {
            try {
                return json.readTree(l);
            } catch (Exception e) {
                throw new AssertionError(l, e);
            }
        }).toList();
        assertEquals(List.of("restore_start", "first_instruction", "restore_end", "restore_start", "failure"),
                lines.stream().map(n -> n.get("event").asText()).toList());
        assertTrue(lines.get(2).get("ok").asBoolean());
        assertEquals("restore-1", lines.get(1).get("vm").asText());
        assertEquals("refused", lines.get(4).get("kind").asText());
    }
}
