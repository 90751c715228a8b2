package dev.faultline.ref;

import dev.faultline.guest.BootProtocol;
import dev.faultline.guest.BootSetup;
import dev.faultline.hv.Caps;
import dev.faultline.hv.ExitRecord;
import dev.faultline.hv.Regs;
import dev.faultline.hv.VcpuExit;
import dev.faultline.sys.HostMemory;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.function.LongUnaryOperator;

/**
 * A test VM on the ref backend booted by the boot protocol: RAM in one anonymous host mapping,
 * slot 0 = [0, 1 MiB), slot 1 = [1 MiB, RAM); the image at 0x200000; vCPU i starts there with
 * RDI = i, RSI = count. {@link #runUntilDone} plays the VMM: console, reports, done.
 */
final class GuestMachine implements AutoCloseable {
    final HostMemory ram;
    final RefHypervisor hv = new RefHypervisor();
    final RefVm vm;
    final List<RefVcpu> vcpus = new ArrayList<>();
    final MemorySegment mem;

    /** Answers IN (port → value) and MMIO reads (gpa → value). */
    LongUnaryOperator inHandler = port -> 0;
    LongUnaryOperator mmioReadHandler = gpa -> 0;

    GuestMachine(long ramSize, byte[] image, int nvcpus) { this(ramSize, image, BootProtocol.DEFAULT_LOAD_GPA, nvcpus); }

    GuestMachine(long ramSize, Toolchain.Image image, int nvcpus) { this(ramSize, image.bytes(), image.entry(), nvcpus); }

    GuestMachine(long ramSize, byte[] image, long entry, int nvcpus) {
        ram = HostMemory.anonymous(ramSize);
        mem = ram.segment();
        vm = (RefVm) hv.createVm(Caps.VM_TYPE_DEFAULT);
        vm.setMemorySlot(BootSetup.lowSlot(ram, 0));
        vm.setMemorySlot(BootSetup.mainSlot(ram, 0));
        BootSetup.writeSystemTables(mem, ramSize);
        MemorySegment.copy(MemorySegment.ofArray(image), 0, mem, BootProtocol.DEFAULT_LOAD_GPA, image.length);
        for (int i = 0; i < nvcpus; i++) {
            RefVcpu v = (RefVcpu) vm.createVcpu(i);
            BootSetup.boot(v, entry, i, nvcpus);
            vcpus.add(v);
        }
    }

    GuestMachine(byte[] image) { this(16L << 20, image, 1); }

    RefVcpu vcpu() { return vcpus.get(0); }

    Regs regs() { return vcpu().getRegs(); }

    long read64(long gpa) { return mem.get(ValueLayout.JAVA_LONG_UNALIGNED, gpa); }

    /** What one vCPU did until it reported done or stopped on another exit. */
    static final class Result {
        final List<ExitRecord> exits = new ArrayList<>();
        final StringBuilder console = new StringBuilder();
        final List<Long> reports = new ArrayList<>();
        Integer doneCode;
        ExitRecord last;
        int lastReason;

        boolean done() { return doneCode != null; }

        String diagnosis = "";

        @Override public String toString() { return "done=" + doneCode + " last=" + last + " console=" + console + diagnosis; }
    }

    Result runUntilDone(int index, int maxExits) {
        RefVcpu v = vcpus.get(index);
        Result res = new Result();
        for (int n = 0; n < maxExits; n++) {
            VcpuExit e = v.run();
            res.lastReason = e.reason();
            if (e instanceof VcpuExit.Io io) {
                if (io.isOut()) {
                    switch (io.port()) {
                        case BootProtocol.PORT_CONSOLE -> { res.console.append((char) io.value()); continue; }
                        case BootProtocol.PORT_REPORT -> { res.reports.add(io.value()); res.exits.add(e.record()); continue; }
                        case BootProtocol.PORT_DONE -> { res.doneCode = (int) io.value(); res.exits.add(e.record()); res.last = e.record(); return res; }
                        default -> { res.exits.add(e.record()); continue; }
                    }
                }
                res.exits.add(e.record());
                io.completeIn(inHandler.applyAsLong(io.port()));
                continue;
            }
            if (e instanceof VcpuExit.Mmio mmio) {
                res.exits.add(e.record());
                if (!mmio.isWrite()) mmio.completeRead(mmioReadHandler.applyAsLong(mmio.gpa()));
                continue;
            }
            res.exits.add(e.record());
            res.last = e.record();
            res.diagnosis = " rip=0x" + Long.toHexString(v.getRegs().rip) + " exception=" + v.lastExceptionVector()
                    + " at 0x" + Long.toHexString(v.lastExceptionAddress());
            return res;
        }
        throw new AssertionError("guest did not finish within " + maxExits + " exits");
    }

    Result runUntilDone() { return runUntilDone(0, 1_000_000); }

    @Override
    public void close() {
        vm.close();
        ram.close();
    }
}
