package dev.faultline.guest;

import dev.faultline.hv.ExitRecord;
import dev.faultline.hv.Hypervisor;
import dev.faultline.hv.Regs;
import dev.faultline.kvm.HostCapabilities;
import dev.faultline.vmm.Backends;
import dev.faultline.vmm.ExitLog;
import dev.faultline.vmm.Machine;
import dev.faultline.vmm.MachineSpec;
import dev.faultline.vmm.RunReport;
import dev.faultline.vmm.VcpuResult;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.function.Consumer;

/**
 * Runs a guest image through faultline's own VMM ({@link Machine}) on a backend and keeps what the
 * guest tests check: the exits of every vCPU in order, the final registers, and a copy of RAM.
 */
final class KvmHarness {
    private KvmHarness() {}

    /** Why guests cannot run on the kvm backend here, or empty. */
    static Optional<String> unavailableReason() {
        HostCapabilities caps = HostCapabilities.probe();
        return caps.kvmAvailable() ? Optional.empty() : Optional.of("/dev/kvm is not usable: " + caps.kvmReason());
    }

    /** One exit: kind "io-out", "io-in", "hlt", "shutdown", or the exit's reason name. */
    record Exit(String kind, int port, int size, long value) {
        static Exit out(int port, long value) { return new Exit("io-out", port, 4, value); }

        static Exit of(ExitRecord r) {
            if (r.reason().equals("io")) {
                int port = (int) Long.parseLong(r.fields().get("port").substring(2), 16);
                int size = Integer.parseInt(r.fields().get("size"));
                boolean out = r.fields().get("direction").equals("out");
                long value = out ? Long.parseUnsignedLong(r.fields().get("data").substring(2), 16) : 0;
                return new Exit(out ? "io-out" : "io-in", port, size, value);
            }
            return new Exit(r.reason(), 0, 0, 0);
        }
    }

    /** The run: exits per vCPU in order, final registers per vCPU, and RAM as it was at the end. */
    record Run(Map<Integer, List<Exit>> exits, Map<Integer, Regs> regs, MemorySegment ram, RunReport report) {
        /** The 32-bit values vCPU {@code v} sent to {@code port}. */
        List<Long> outs(int v, int port) {
            return exits.get(v).stream().filter(e -> e.kind.equals("io-out") && e.port == port).map(Exit::value).toList();
        }

        long reg(int v, String name) {
            return regs.get(v).byName(name);
        }

        void withRam(Consumer<MemorySegment> check) {
            check.accept(ram);
        }
    }

    static Run run(GuestImage image, long memSize, int vcpus, Consumer<MemorySegment> prepare) {
        return run("kvm", image, memSize, vcpus, prepare);
    }

    /**
     * Runs {@code image} on {@code vcpus} vCPUs with {@code memSize} bytes of RAM on {@code backend};
     * {@code prepare} may fill RAM first (after the image and system tables are written).
     */
    static Run run(String backend, GuestImage image, long memSize, int vcpus, Consumer<MemorySegment> prepare) {
        MachineSpec spec = MachineSpec.of(memSize, vcpus, image).withExitLogLimit(100_000).withTimeout(Duration.ofMinutes(2));
        try (Hypervisor hv = Backends.open(backend); Machine m = new Machine(hv, spec)) {
            prepare.accept(m.ram().segment());
            RunReport report = m.run();
            Map<Integer, List<Exit>> exits = new HashMap<>();
            Map<Integer, Regs> regs = new HashMap<>();
            for (VcpuResult v : report.vcpus()) {
                List<Exit> list = new ArrayList<>();
                for (ExitLog.Entry e : v.exits().entries()) list.add(Exit.of(e.exit()));
                exits.put(v.index(), list);
                regs.put(v.index(), v.regs());
            }
            MemorySegment copy = Arena.ofAuto().allocate(memSize, 4096);
            copy.copyFrom(m.ram().segment());
            return new Run(exits, regs, copy, report);
        }
    }
}
