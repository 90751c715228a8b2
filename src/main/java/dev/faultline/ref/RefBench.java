package dev.faultline.ref;

import dev.faultline.guest.BootProtocol;
import dev.faultline.guest.BootSetup;
import dev.faultline.guest.GuestImage;
import dev.faultline.hv.Caps;
import dev.faultline.hv.VcpuExit;
import dev.faultline.sys.HostMemory;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The interpreter's speed on a loop without faults, for {@code faultline bench interp}: a guest that
 * runs {@code iterations} times through add/xor/dec/jnz (4 instructions per iteration, all in
 * registers) and reports done. Stateless; each call builds and discards its own VM.
 */
public final class RefBench {
    private RefBench() {}

    /** Instructions retired and the wall time of the run (after a warm-up run that is not counted). */
    public record Result(long instructions, long nanos, long iterations) {
        public double instructionsPerSecond() { return nanos == 0 ? 0 : instructions * 1e9 / nanos; }
    }

    /** Instructions per loop iteration of {@link #loopImage}. */
    public static final int INSTRUCTIONS_PER_ITERATION = 4;

    /**
     * The benchmark guest, hand-encoded so it needs no assembler:
     * <pre>
     *   movabs $iterations, %rcx
     *   xor    %eax, %eax
     * 1: add   %rcx, %rax
     *   xor    $0x55, %rax
     *   dec    %rcx
     *   jnz    1b
     *   out    %eax, $0xf4
     *   hlt
     * </pre>
     */
    public static byte[] loopImage(long iterations) {
        ByteBuffer b = ByteBuffer.allocate(32).order(ByteOrder.LITTLE_ENDIAN);
        b.put((byte) 0x48).put((byte) 0xb9).putLong(iterations);
        b.put((byte) 0x31).put((byte) 0xc0);
        b.put((byte) 0x48).put((byte) 0x01).put((byte) 0xc8);
        b.put((byte) 0x48).put((byte) 0x83).put((byte) 0xf0).put((byte) 0x55);
        b.put((byte) 0x48).put((byte) 0xff).put((byte) 0xc9);
        b.put((byte) 0x75).put((byte) 0xf4);
        b.put((byte) 0xe7).put((byte) 0xf4);
        b.put((byte) 0xf4);
        byte[] out = new byte[b.position()];
        b.flip().get(out);
        return out;
    }

    /** Runs the loop guest for {@code iterations} on one vCPU; a shorter warm-up run precedes it. */
    public static Result run(long iterations) {
        runOnce(Math.min(iterations, 20_000_000L));
        return runOnce(iterations);
    }

    static Result runOnce(long iterations) {
        if (iterations < 1) throw new IllegalArgumentException("iterations must be positive, got " + iterations);
        long ramSize = 4L << 20;
        try (HostMemory ram = HostMemory.anonymous(ramSize); RefHypervisor hv = new RefHypervisor();
             RefVm vm = (RefVm) hv.createVm(Caps.VM_TYPE_DEFAULT)) {
            vm.setMemorySlot(BootSetup.lowSlot(ram, 0));
            vm.setMemorySlot(BootSetup.mainSlot(ram, 0));
            GuestImage.of(loopImage(iterations), BootProtocol.DEFAULT_LOAD_GPA, BootProtocol.DEFAULT_LOAD_GPA)
                    .installWithSystemTables(ram.segment(), ramSize);
            RefVcpu v = (RefVcpu) vm.createVcpu(0);
            BootSetup.boot(v, BootProtocol.DEFAULT_LOAD_GPA, 0, 1);
            long before = v.instructionsRetired();
            long t0 = System.nanoTime();
            for (;;) {
                VcpuExit e = v.run();
                if (e instanceof VcpuExit.Io io && io.isOut() && io.port() == BootProtocol.PORT_DONE) break;
                if (!(e instanceof VcpuExit.Interrupted)) {
                    throw new IllegalStateException("benchmark guest stopped with " + e.record());
                }
            }
            long t1 = System.nanoTime();
            return new Result(v.instructionsRetired() - before, t1 - t0, iterations);
        }
    }
}
