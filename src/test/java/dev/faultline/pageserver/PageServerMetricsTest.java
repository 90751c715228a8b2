package dev.faultline.pageserver;

import static dev.faultline.pageserver.FirecrackerVmmSide.MIB;
import static dev.faultline.pageserver.FirecrackerVmmSide.PAGE;
import static org.junit.jupiter.api.Assertions.*;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.faultline.paging.Prefetch;
import dev.faultline.sys.HostMemory;
import dev.faultline.sys.Libc;
import dev.faultline.telemetry.EventLog;
import dev.faultline.telemetry.MetricsServer;
import dev.faultline.telemetry.PagingMetrics;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** What a platform sees of the handler: Prometheus metrics while a VM is served and after, and the event lines. */
class PageServerMetricsTest {
    static String scrape(int port) throws Exception {
        HttpResponse<String> r = HttpClient.newHttpClient().send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + "/metrics"))
                .timeout(Duration.ofSeconds(10)).build(), HttpResponse.BodyHandlers.ofString());
        assertEquals(200, r.statusCode());
        return r.body();
    }

    static double value(String text, String series) {
        Matcher m = Pattern.compile("(?m)^" + Pattern.quote(series) + " (\\S+)$").matcher(text);
        assertTrue(m.find(), series + " in\n" + text);
        return Double.parseDouble(m.group(1));
    }

    @Test
    void shouldExposeFaultsPagesAndLatencyPerVmAndInTotalAndWriteEvents(@TempDir Path dir) throws Exception {
        FirecrackerVmmSide.assumeUserfaultfd();
        Path memFile = dir.resolve("mem");
        FirecrackerVmmSide.writeMemoryFile(memFile, 4 * MIB);
        Path events = dir.resolve("events.jsonl");
        PagingMetrics metrics = new PagingMetrics();
        List<HostMemory> regions = FirecrackerVmmSide.mapRegions(MIB, 3 * MIB);
        int uid = (Integer) Files.getAttribute(Path.of("/proc/self"), "unix:uid");
        try (MemoryFile file = MemoryFile.open(memFile, true); EventLog log = EventLog.open(events.toString());
             MetricsServer http = MetricsServer.start("127.0.0.1", 0, metrics);
             PageServer server = PageServer.start(new PageServer.Config(dir.resolve("h.sock"), java.util.Set.of(uid), 4, file, file.size(),
                     Prefetch.NONE, null, 0, PageServer.OnFailure.CLOSE, 5000, log, metrics, line -> { }))) {
            try (FirecrackerVmm vmm = FirecrackerVmm.handOff(server.socket(), FirecrackerVmmSide.mappings(regions), FirecrackerVersion.V1_12, false)) {
                for (long off = 0; off < 2 * MIB; off += PAGE) Libc.loadLongInNative(regions.get(off < MIB ? 0 : 1).address() + (off < MIB ? off : off - MIB));
                assertEquals(2, vmm.regions().size());
                String live = scrape(http.port());
                assertEquals(512, value(live, "faultline_vm_faults_total{vm=\"vm-1\"}"));
                assertEquals(512, value(live, "faultline_vm_pages_installed_total{cause=\"fault\",vm=\"vm-1\"}"));
                assertEquals(512, value(live, "faultline_vm_fault_latency_seconds_count{vm=\"vm-1\"}"));
                assertEquals(1, value(live, "faultline_vms"));
                assertEquals(512, value(live, "faultline_faults_total"));
            }
            long until = System.nanoTime() + 10_000_000_000L;
            while (server.endedVms().isEmpty() && System.nanoTime() < until) Thread.sleep(5);
            String after = scrape(http.port());
            assertEquals(0, value(after, "faultline_vms"));
            assertEquals(512, value(after, "faultline_faults_total"), "an ended VM's faults stay in the totals");
            assertEquals(512 * PAGE, value(after, "faultline_bytes_installed_total"));
            assertEquals(512, value(after, "faultline_fault_latency_seconds_count"));
            assertFalse(after.contains("vm=\"vm-1\""), "an ended VM's own series are gone");
        } finally {
            for (HostMemory m : regions) m.close();
        }
        ObjectMapper json = new ObjectMapper();
        List<String> kinds = Files.readAllLines(events).stream().map(l -> {
            try {
                return json.readTree(l).get("event").asText();
            } catch (Exception e) {
                throw new AssertionError(l, e);
            }
        }).toList();
        assertEquals(List.of("listening", "connection", "vm_end", "closed"), kinds);
    }
}
