package dev.faultline.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.faultline.kvm.KvmHypervisor;
import dev.faultline.sys.ErrnoException;
import dev.faultline.sys.Userfaultfd;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * {@code bench paging --backend kvm} at one page per fault: whichever way the handlers sleep and are
 * scheduled, the guest runs to a verified end with one fault and one install per page, and the JSON
 * says where each thread's time went (a functional test; the figures are not judged here).
 */
class BenchPagingKvmTest {
    static final long PAGES_PER_VCPU = 1024;   // 4 MiB

    static void kvmAndUserfaultfdOrSkip() {
        try (KvmHypervisor kvm = KvmHypervisor.open(); Userfaultfd u = Userfaultfd.open()) {
            assumeTrue(kvm != null && u != null);
        } catch (ErrnoException e) {
            assumeTrue(false, "needs /dev/kvm and userfaultfd: " + e.getMessage());
        }
    }

    @ParameterizedTest
    @CsvSource({"1,auto,default,read(),nice -5", "2,auto,default,read(),nice -5", "1,read,default,read(),nice -5", "1,poll,idle,poll(),SCHED_IDLE",
            "2,auto,normal,read(),normal", "2,poll,default,poll(),normal", "2,read,fifo:10,read(),SCHED_FIFO 10", "1,poll,nice:-5,poll(),nice -5"})
    void shouldServeEachFaultWithItsOwnPageHoweverHandlersWaitAndAreScheduled(int vcpus, String wait, String sched, String sleepsIn,
                                                                              String scheduling) throws Exception {
        kvmAndUserfaultfdOrSkip();
        List<String> args = new ArrayList<>(List.of("bench", "paging", "--backend", "kvm", "--vcpus", Integer.toString(vcpus),
                "--mem-per-vcpu", "4M", "--prefetch", "none", "--handler-wait", wait, "--no-warmup", "--json"));
        if (!sched.equals("default")) args.addAll(List.of("--handler-sched", sched));
        CliCapture.Outcome o = CliTest.cli(args.toArray(String[]::new));
        assertEquals(0, o.code(), o.err());
        JsonNode j = o.json();
        assertEquals(sleepsIn, j.get("handler_sleeps_in").asText());
        assertEquals(scheduling, j.get("handler_scheduling").asText());
        assertEquals(vcpus * PAGES_PER_VCPU, j.get("pages").asLong());
        JsonNode h = j.get("handler");
        assertEquals(vcpus * PAGES_PER_VCPU, h.get("faults").asLong(), "one fault per page at --prefetch none: " + h);
        assertEquals(vcpus * PAGES_PER_VCPU, h.get("pages_installed").asLong(), h.toString());
        assertEquals(0, h.get("pages_prefetched").asLong());
        assertEquals(vcpus, h.get("lanes").size(), "one handler per vCPU");
        for (JsonNode lane : h.get("lanes")) {
            assertEquals(lane.get("faults").asLong(), lane.get("install_calls").asLong(), "one install per fault: " + lane);
            assertTrue(lane.get("thread_per_event").get("switches").asLong() > 0, lane.toString());
        }
        for (JsonNode v : j.get("per_vcpu")) {
            assertTrue(v.get("thread_per_page").get("cpu_us_per_event").asDouble() > 0, v.toString());
            assertEquals(PAGES_PER_VCPU, v.get("fault_latency").get("faults").asLong(), v.toString());
        }
    }

    @Test
    void shouldRepeatTheRunAndItsBaselineInRoundsAndReportEveryRatioAndTheirMedian() throws Exception {
        kvmAndUserfaultfdOrSkip();
        CliCapture.Outcome o = CliTest.cli("bench", "paging", "--backend", "kvm", "--vcpus", "1", "--mem-per-vcpu", "4M", "--prefetch", "none",
                "--baseline", "--rounds", "3", "--no-warmup", "--json");
        assertEquals(0, o.code(), o.err());
        JsonNode j = o.json();
        assertEquals(3, j.get("rounds").asInt());
        assertEquals(3, j.get("pages_per_sec_per_round").size());
        assertEquals(3, j.get("first_touch_pages_per_sec_per_round").size());
        JsonNode ratios = j.get("ratio_to_first_touch_per_round");
        assertEquals(3, ratios.size());
        List<Double> sorted = new ArrayList<>();
        for (JsonNode r : ratios) sorted.add(r.asDouble());
        sorted.sort(null);
        assertEquals(sorted.get(1), j.get("ratio_to_first_touch").asDouble(), 1e-9, "the median of the rounds' ratios");
        List<Long> rates = new ArrayList<>();
        for (JsonNode r : j.get("pages_per_sec_per_round")) rates.add(r.asLong());
        rates.sort(null);
        assertEquals(rates.get(1), j.get("pages_per_sec").asLong(), "the figures are the median run's");
        assertEquals(PAGES_PER_VCPU, j.get("handler").get("faults").asLong(), "the median run's own handler figures");
    }

    @Test
    void shouldServeEveryFaultOnTheFaultingVcpusOwnThreadUnderExitDelivery() throws Exception {
        kvmAndUserfaultfdOrSkip();
        CliCapture.Outcome o = CliTest.cli("bench", "paging", "--backend", "kvm", "--delivery", "exit", "--vcpus", "2", "--mem-per-vcpu", "4M",
                "--prefetch", "none", "--no-warmup", "--json");
        assertEquals(0, o.code(), o.err());
        JsonNode j = o.json();
        assertEquals("exit", j.get("delivery").asText());
        assertEquals(1, j.get("handlers").asInt(), "one handler, for host threads' faults");
        assertEquals(2 * PAGES_PER_VCPU, j.get("handler").get("pages_installed").asLong());
        for (JsonNode lane : j.get("handler").get("lanes")) {
            String name = lane.get("lane").asText();
            if (name.startsWith("uffd-")) assertEquals(0, lane.get("faults").asLong(), "the handler thread served no vCPU: " + lane);
            else assertEquals(PAGES_PER_VCPU, lane.get("faults").asLong(), "each vCPU served its own slice: " + lane);
        }
        for (JsonNode v : j.get("per_vcpu")) {
            assertTrue(v.get("exits").get("memory_fault").asLong() >= PAGES_PER_VCPU, "a memory-fault exit per page: " + v);
            assertEquals(v.get("exits").get("memory_fault").asLong(), v.get("vcpu_wait").get("faults").asLong(), "held time per exit: " + v);
        }
    }

    @Test
    void shouldCompareExitAndUffdDeliveryRoundByRoundInOneProcess() throws Exception {
        kvmAndUserfaultfdOrSkip();
        CliCapture.Outcome o = CliTest.cli("bench", "paging", "--backend", "kvm", "--compare-deliveries", "--vcpu-counts", "1,2", "--rounds", "2",
                "--mem-per-vcpu", "4M", "--prefetch", "none", "--baseline", "--no-warmup", "--json");
        assertEquals(0, o.code(), o.err());
        JsonNode j = o.json();
        assertEquals(2, j.get("comparisons").size());
        for (JsonNode c : j.get("comparisons")) {
            assertEquals(2, c.get("exit_over_uffd_per_round").size(), c.toString());
            for (String how : new String[] {"exit", "uffd"}) {
                assertEquals(2, c.get(how).get("pages_per_sec_per_round").size());
                assertEquals(c.get("vcpus").asLong() * PAGES_PER_VCPU, c.get(how).get("median_run").get("handler").get("pages_installed").asLong());
                assertTrue(c.get(how).get("ratio_to_first_touch").asDouble() > 0);
            }
            double ratio0 = c.get("exit").get("pages_per_sec_per_round").get(0).asDouble() / c.get("uffd").get("pages_per_sec_per_round").get(0).asDouble();
            // both figures come rounded (pages/s to a whole number, the ratio to three decimals)
            assertEquals(ratio0, c.get("exit_over_uffd_per_round").get(0).asDouble(), 0.001 + ratio0 * 0.001, "round 0's ratio from its own two runs");
        }
    }

    @Test
    void shouldRefuseHandlerSettingsThatCannotWorkInOneLine() {
        String[][] refused = {
            {"--delivery", "exit", "--handlers", "2"},
            {"--delivery", "exit", "--spin-us", "5"},
            {"--handler-sched", "fifo:10", "--spin-us", "20"},
            {"--handler-sched", "fifo:0"},
            {"--handler-sched", "rr:5"},
            {"--handler-wait", "read", "--spin-us", "20"},
            {"--handler-wait", "read", "--prefetch", "readahead", "--readahead", "16:256:8192"},
            {"--handler-wait", "sometimes"},
            {"--rounds", "3"},
            {"--rounds", "0", "--baseline"},
        };
        for (String[] args : refused) {
            String[] all = new String[args.length + 5];
            all[0] = "bench";
            all[1] = "paging";
            all[2] = "--backend";
            all[3] = "kvm";
            System.arraycopy(args, 0, all, 4, args.length);
            all[all.length - 1] = "--mem-per-vcpu=1M";
            CliCapture.Outcome o = CliTest.cli(all);
            assertEquals(2, o.code(), String.join(" ", args) + " -> " + o.err());
            assertEquals(1, o.err().strip().lines().count(), "one line: " + o.err());
            assertFalse(o.err().contains("\tat "), o.err());
        }
    }
}
