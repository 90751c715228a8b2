package dev.faultline.ref;

import dev.faultline.guest.BootProtocol;
import dev.faultline.guest.BootSetup;
import dev.faultline.hv.Caps;
import dev.faultline.hv.MemorySlot;
import dev.faultline.hv.UserfaultBitmap;
import dev.faultline.hv.VcpuExit;
import dev.faultline.sys.HostMemory;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;

/**
 * A ref VM for memory-fault tests: RAM [0, 16 MiB) as the boot protocol's two slots, the main slot
 * optionally under EXIT_ON_MISSING (every page missing except the image's) and optionally backed by
 * a guest_memfd (VM_TYPE_SW_PROTECTED); the image at 0x200000.
 */
final class FaultVm implements AutoCloseable {
    static final long RAM = 16L << 20, MAIN = BootProtocol.IMAGE_MIN_GPA;

    final HostMemory ram = HostMemory.anonymous(RAM);
    final MemorySegment mem = ram.segment();
    final RefVm vm;
    final List<RefVcpu> vcpus = new ArrayList<>();
    UserfaultBitmap missing;
    RefGuestMemfd gmem;

    FaultVm(byte[] image, int nvcpus, int vmType, boolean exitOnMissing) {
        vm = (RefVm) new RefHypervisor().createVm(vmType);
        vm.setMemorySlot(BootSetup.lowSlot(ram, 0));
        MemorySlot main = BootSetup.mainSlot(ram, 0);
        if (vmType == Caps.VM_TYPE_SW_PROTECTED) {
            gmem = (RefGuestMemfd) vm.createGuestMemfd(RAM - MAIN, 0);
            main = main.withGuestMemfd(gmem, 0);
        }
        if (exitOnMissing) {
            missing = UserfaultBitmap.allMissing(MAIN, RAM - MAIN);
            missing.markPresent(BootProtocol.DEFAULT_LOAD_GPA, (image.length + 0xfffL) & ~0xfffL);
            main = main.withUserfault(missing);
        }
        vm.setMemorySlot(main);
        BootSetup.writeSystemTables(mem, RAM);
        MemorySegment.copy(MemorySegment.ofArray(image), 0, mem, BootProtocol.DEFAULT_LOAD_GPA, image.length);
        for (int i = 0; i < nvcpus; i++) {
            RefVcpu v = (RefVcpu) vm.createVcpu(i);
            BootSetup.boot(v, BootProtocol.DEFAULT_LOAD_GPA, i, nvcpus);
            vcpus.add(v);
        }
    }

    RefVcpu vcpu() { return vcpus.get(0); }

    long read64(long gpa) { return mem.get(ValueLayout.JAVA_LONG_UNALIGNED, gpa); }

    void write64(long gpa, long v) { mem.set(ValueLayout.JAVA_LONG_UNALIGNED, gpa, v); }

    long readPrivate64(long gpa) { return gmem.segment().get(ValueLayout.JAVA_LONG_UNALIGNED, gpa - MAIN); }

    /** One memory-fault exit as the tests compare them. */
    record Fault(String errno, long flags, long gpa, long size) {
        static Fault of(VcpuExit.MemoryFault f) {
            return new Fault(dev.faultline.sys.Errno.name(f.errno()), f.flags(), f.gpa(), f.size());
        }
        @Override public String toString() {
            return String.format("%s flags 0x%x gpa 0x%x size 0x%x", errno, flags, gpa, size);
        }
    }

    static Fault efault(long flags, long gpa) { return new Fault("EFAULT", flags, gpa, 0x1000); }

    @Override
    public void close() {
        vm.close();
        ram.close();
        if (gmem != null) gmem.close();
    }
}
