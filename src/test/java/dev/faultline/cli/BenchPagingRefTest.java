package dev.faultline.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * {@code bench paging --backend ref}: exit and blocking delivery run the guest to a verified end and
 * install every page exactly once (a functional test; the figures themselves are not judged here).
 */
class BenchPagingRefTest {
    static final long PAGES_PER_VCPU = 1024;   // 4 MiB

    static JsonNode bench(String... args) throws Exception {
        String[] all = new String[args.length + 2];
        all[0] = "bench";
        all[1] = "paging";
        System.arraycopy(args, 0, all, 2, args.length);
        CliCapture.Outcome o = CliTest.cli(all);
        assertEquals(0, o.code(), String.join(" ", args) + " -> " + o.err());
        return o.json();
    }

    static void assertOneInstallPerPage(JsonNode run, int vcpus, boolean onePagePerFault) {
        assertEquals(vcpus * PAGES_PER_VCPU, run.get("pages").asLong());
        assertTrue(run.get("installed_exactly_once").asText().startsWith("yes"), run.toString());
        JsonNode h = run.get("handler");
        if (onePagePerFault) {
            // Each vCPU touches only its own slice, so every touched page faults once and is installed once.
            assertEquals(vcpus * PAGES_PER_VCPU, h.get("faults").asLong());
            assertEquals(vcpus * PAGES_PER_VCPU, h.get("pages_installed").asLong());
        } else {
            assertTrue(h.get("faults").asLong() < vcpus * PAGES_PER_VCPU, h.toString());
            assertTrue(h.get("pages_installed").asLong() >= vcpus * PAGES_PER_VCPU, h.toString());
        }
        assertEquals(vcpus, run.get("per_vcpu").size());
        for (JsonNode v : run.get("per_vcpu")) {
            assertTrue(v.get("pages_per_sec").asLong() > 0);
            assertEquals(v.get("fault_latency").get("faults").asLong(), v.get("vcpu_wait").get("faults").asLong(), v.toString());
            assertTrue(v.get("vcpu_wait").get("p50_us").asDouble() > 0, v.toString());
        }
    }

    @ParameterizedTest
    @CsvSource({"exit,1,none", "exit,2,none", "blocking,1,none", "blocking,2,none", "exit,2,readahead", "blocking,2,readahead"})
    void shouldPageTheGuestOnRefInstallingEveryPageExactlyOnce(String delivery, int vcpus, String prefetch) throws Exception {
        JsonNode j = bench("--backend", "ref", "--delivery", delivery, "--vcpus", Integer.toString(vcpus), "--mem-per-vcpu", "4M",
                "--prefetch", prefetch, "--no-warmup", "--baseline", "--json");
        assertEquals("ref", j.get("backend").asText());
        assertEquals(delivery, j.get("delivery").asText());
        assertOneInstallPerPage(j, vcpus, prefetch.equals("none"));
        assertTrue(j.get("ratio_to_first_touch").asDouble() > 0);
        assertEquals(vcpus * PAGES_PER_VCPU, j.get("first_touch_ceiling").get("pages").asLong());
    }

    @Test
    void shouldFillPagesFromAFileAndReplayARecordedWorkingSet(@TempDir Path dir) throws Exception {
        JsonNode file = bench("--backend", "ref", "--delivery", "blocking", "--vcpus", "2", "--mem-per-vcpu", "4M", "--source", "file",
                "--prefetch", "none", "--no-warmup", "--json");
        assertEquals("yes", file.get("ram_matches_file_except_stamps").asText());
        assertOneInstallPerPage(file, 2, true);
        Path ws = dir.resolve("ws");
        bench("--backend", "ref", "--delivery", "exit", "--mem-per-vcpu", "4M", "--prefetch", "none", "--record-working-set", ws.toString(),
                "--no-warmup", "--json");
        assertTrue(dev.faultline.paging.WorkingSet.read(ws).size() >= PAGES_PER_VCPU, "every page the guest touched is in the set");
        for (String delivery : new String[] {"exit", "blocking"}) {
            JsonNode replay = bench("--backend", "ref", "--delivery", delivery, "--mem-per-vcpu", "4M", "--prefetch", "replay",
                    "--working-set", ws.toString(), "--no-warmup", "--json");
            assertTrue(replay.get("installed_exactly_once").asText().startsWith("yes"), replay.toString());
            assertTrue(replay.get("handler").get("pages_installed").asLong() >= PAGES_PER_VCPU);
        }
    }

    @Test
    void shouldCompareExitAndBlockingDeliveryForEachVcpuCountInOneJson() throws Exception {
        JsonNode j = bench("--backend", "ref", "--compare-deliveries", "--vcpu-counts", "1,2", "--rounds", "2", "--mem-per-vcpu", "4M",
                "--prefetch", "none", "--baseline", "--no-warmup", "--json");
        assertEquals("paging-deliveries", j.get("benchmark").asText());
        assertEquals(2, j.get("comparisons").size());
        for (int i = 0; i < 2; i++) {
            JsonNode c = j.get("comparisons").get(i);
            assertEquals(i + 1, c.get("vcpus").asInt());
            assertTrue(c.get("exit_over_blocking").asDouble() > 0);
            assertEquals(2, c.get("exit_over_blocking_per_round").size());
            for (String how : new String[] {"exit", "blocking"}) {
                assertEquals(2, c.get(how).get("pages_per_sec_per_round").size());
                assertTrue(c.get(how).get("ratio_to_first_touch").asDouble() > 0);
                assertOneInstallPerPage(c.get(how).get("median_run"), i + 1, true);
            }
            assertTrue(c.get("first_touch_ceiling").get("pages_per_sec_median").asLong() > 0);
        }
    }

    @Test
    void shouldRefuseWhatRefCannotDoInOneLine() {
        String[][] refused = {
            {"--backend", "ref", "--delivery", "uffd"},
            {"--backend", "ref", "--delivery", "exit", "--readahead", "16:256:8192"},
            {"--backend", "ref", "--delivery", "exit", "--c-baseline"},
            {"--backend", "ref", "--delivery", "exit", "--handlers", "2"},
            {"--backend", "ref", "--delivery", "blocking", "--spin-us", "5"},
            {"--backend", "kvm", "--delivery", "blocking"},
            {"--backend", "ref", "--compare-deliveries", "--rounds", "0"},
        };
        for (String[] args : refused) {
            String[] all = new String[args.length + 3];
            all[0] = "bench";
            all[1] = "paging";
            System.arraycopy(args, 0, all, 2, args.length);
            all[all.length - 1] = "--mem-per-vcpu=1M";
            CliCapture.Outcome o = CliTest.cli(all);
            assertEquals(2, o.code(), String.join(" ", args) + " -> " + o.err());
            assertEquals(1, o.err().strip().lines().count(), "one line: " + o.err());
            assertFalse(o.err().contains("\tat "), o.err());
        }
    }
}
