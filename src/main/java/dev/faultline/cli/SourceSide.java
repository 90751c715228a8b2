package dev.faultline.cli;

import dev.faultline.hv.Hypervisor;
import dev.faultline.hv.MemslotFlags;
import dev.faultline.migration.LoopbackBaseline;
import dev.faultline.migration.MigrationSource;
import dev.faultline.transport.Transport;
import dev.faultline.vmm.Backends;
import dev.faultline.vmm.Machine;
import dev.faultline.vmm.MachineSpec;
import dev.faultline.vmm.MemoryFaultHandler;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Map;

/** The source half of `migrate send` and `demo`: build the guest, fill its data, migrate it, verify, summarise. */
final class SourceSide {
    private SourceSide() {}

    /** First byte of the data a guest is given with --fill (the workloads' region starts here). */
    static final long FILL_START = 0x400000;

    record Outcome(Map<String, Object> summary, MigrationSource.Result result, boolean ok) {}

    static Outcome run(GuestOptions opts, GuestOptions.Source src, MigrationSource.Options mo, Transport transport, long fillBytes, boolean baseline,
                       MigrationSource.Listener listener) {
        GuestOptions.Prepared prepared = opts.prepare(src);
        Map<String, Object> summary = new LinkedHashMap<>();
        if (baseline) {
            try {
                long ns = LoopbackBaseline.measure(opts.mem);
                summary.put("loopback_baseline_ms", ns / 1e6);
            } catch (IOException e) {
                throw new UserError("cannot measure the loopback baseline: " + e.getMessage());
            }
        }
        MachineSpec spec = prepared.spec(null).withTimeout(mo.guestTimeout());
        if (mo.precopyRounds() > 0) spec = spec.withMainSlot(MemslotFlags.LOG_DIRTY_PAGES, MemoryFaultHandler.NONE);
        String backend = opts.backend.equals("auto") ? Backends.best().name() : opts.backend;
        try (Hypervisor hv = Backends.open(backend); Machine m = new Machine(hv, spec)) {
            fill(m.ram().segment(), fillBytes);
            prepared.beforeRun(m.ram().segment());
            MigrationSource.Result r = new MigrationSource(mo, transport, listener).migrate(m);
            boolean ok = r.ok();
            if (mo.reference()) {
                prepared.verify(m, r.sourceRun());
                ok &= prepared.verified();
                summary.put("guest_verdict", prepared.verdict());
            }
            summary.put("source_backend", backend);
            summary.put("guest", prepared.name());
            summary.put("ram_bytes", opts.mem);
            summary.put("vcpus", opts.vcpus);
            summary.put("data_filled_bytes", fillBytes);
            summary.putAll(r.figures());
            summary.put("transport_setup", transport.describe());
            if (summary.get("loopback_baseline_ms") instanceof Double b && b > 0) {
                summary.put("total_over_loopback", Math.round((Double) r.figures().get("total_ms") / b * 100) / 100.0);
            }
            Map<String, Object> d = r.destination();
            summary.put("fault_latency", d.get("fault_latency"));
            summary.put("fault_latency_all", d.get("fault_latency_all"));
            summary.put("destination", d);
            summary.put("verified", ok);
            summary.put("problems", r.problems());
            return new Outcome(summary, r, ok);
        }
    }

    /** Deterministic non-zero data in [4 MiB, 4 MiB + bytes): what the guest holds before it moves. */
    static void fill(MemorySegment ram, long bytes) {
        long end = Math.min(ram.byteSize(), FILL_START + bytes);
        long x = 0x9E3779B97F4A7C15L;
        for (long a = FILL_START; a + 8 <= end; a += 8) {
            x ^= x << 13;
            x ^= x >>> 7;
            x ^= x << 17;
            ram.set(ValueLayout.JAVA_LONG_UNALIGNED, a, x);
        }
    }

    static double number(Object o) {
        return o instanceof Number n ? n.doubleValue() : Double.NaN;
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> map(Object o) {
        return o instanceof Map<?, ?> m ? (Map<String, Object>) m : Map.of();
    }

    static Duration seconds(long s) { return Duration.ofSeconds(s); }
}
