package dev.faultline.vmm;

import dev.faultline.hv.Regs;
import dev.faultline.hv.Sregs;
import dev.faultline.hv.Vcpu;
import dev.faultline.hv.VcpuExit;
import dev.faultline.hv.Vm;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.List;
import java.util.function.Consumer;

/** A vCPU that plays back a script of exits: lets the run loop be tested without a backend. */
final class ScriptedVcpu implements Vcpu {
    private final VcpuExit.Set exits = new VcpuExit.Set();
    private final MemorySegment data = Arena.ofAuto().allocate(64);
    private final Deque<Consumer<ScriptedVcpu>> script = new ArrayDeque<>();
    final List<Long> inValuesSeen = new ArrayList<>();
    private VcpuExit last;
    int runs;

    ScriptedVcpu then(Consumer<ScriptedVcpu> step) { script.add(step); return this; }

    ScriptedVcpu out(int port, int size, long value) {
        return then(v -> { v.data.set(ValueLayout.JAVA_LONG_UNALIGNED, 0, value); v.exits.io.fill(VcpuExit.Io.DIR_OUT, size, port, 1, v.data.asSlice(0, size)); v.last = v.exits.io; });
    }

    ScriptedVcpu in(int port) {
        return then(v -> { v.exits.io.fill(VcpuExit.Io.DIR_IN, 4, port, 1, v.data.asSlice(0, 4)); v.last = v.exits.io; });
    }

    ScriptedVcpu fault(long gpa, long flags, int errno) {
        return then(v -> { v.exits.memoryFault.fill(flags, gpa, 4096, errno, VcpuExit.MemoryFault.Origin.KERNEL); v.last = v.exits.memoryFault; });
    }

    ScriptedVcpu hlt() { return then(v -> v.last = v.exits.hlt); }

    ScriptedVcpu shutdown() { return then(v -> v.last = v.exits.shutdown); }

    @Override public VcpuExit run() {
        runs++;
        if (last == exits.io && !exits.io.isOut()) inValuesSeen.add(exits.io.value());
        Consumer<ScriptedVcpu> step = script.poll();
        if (step == null) throw new AssertionError("script exhausted: the run loop entered the guest once too often");
        step.accept(this);
        return last;
    }

    @Override public int id() { return 0; }
    @Override public Vm vm() { return null; }
    @Override public Regs getRegs(Regs into) { into.rip = 0x200000 + runs; return into; }
    @Override public void setRegs(Regs regs) { }
    @Override public Sregs getSregs() { return null; }
    @Override public void setSregs(Sregs sregs) { }
    @Override public void kick() { }
    @Override public void close() { }
}
