package dev.faultline.paging;

import static dev.faultline.guest.asm.Mem.m64;
import static dev.faultline.guest.asm.Reg.*;
import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.faultline.guest.BootProtocol;
import dev.faultline.guest.GuestImage;
import dev.faultline.guest.asm.Assembler;
import dev.faultline.guest.asm.Label;
import dev.faultline.guest.workload.Workload;
import dev.faultline.guest.workload.WorkloadParams;
import dev.faultline.guest.workload.Workloads;
import dev.faultline.hv.Regs;
import dev.faultline.kvm.KvmHypervisor;
import dev.faultline.paging.uffd.UffdPager;
import dev.faultline.sys.ErrnoException;
import dev.faultline.vmm.GuestRam;
import dev.faultline.vmm.Machine;
import dev.faultline.vmm.MachineSpec;
import dev.faultline.vmm.RunReport;
import dev.faultline.vmm.VcpuResult;
import java.lang.foreign.ValueLayout;
import java.util.List;
import org.junit.jupiter.api.Test;

/** KVM guests whose main memslot is demand-paged through userfaultfd by the fault core. */
class KvmUffdPagingTest {
    static final long PAGE = FaultCore.PAGE, BASE = BootProtocol.IMAGE_MIN_GPA;

    static KvmHypervisor kvmOrSkip() {
        try {
            return KvmHypervisor.open();
        } catch (ErrnoException e) {
            assumeTrue(false, "needs a usable /dev/kvm: " + e.getMessage());
            throw e;
        }
    }

    static void userfaultfdOrSkip() {
        UffdPagingTest.assumeUserfaultfd();
    }

    /** Every vCPU reads one word of every page of [from, to), sums them into rbx, then reports done. */
    static GuestImage sharedReader(long from, long to) {
        Assembler a = new Assembler(BootProtocol.DEFAULT_LOAD_GPA);
        a.movabs(RAX, from).movabs(RCX, to).xor(RBX, RBX);
        Label loop = a.here();
        a.mov(RDX, m64(RAX)).add(RBX, RDX).add(RAX, PAGE).cmp(RAX, RCX).jb(loop);
        a.xor(EAX, EAX).out(BootProtocol.PORT_DONE, EAX);
        Label halt = a.here();
        a.hlt().jmp(halt);
        return GuestImage.of(a.assemble(), BootProtocol.DEFAULT_LOAD_GPA, BootProtocol.DEFAULT_LOAD_GPA);
    }

    @Test
    void shouldInstallEachSharedPageOnceWhenEveryVcpuFaultsOnTheSamePages() throws Exception {
        KvmHypervisor kvm = kvmOrSkip();
        userfaultfdOrSkip();
        int vcpus = 4;
        long from = 0x400000, pages = 2048, ram = from + pages * PAGE;
        StampSource source = new StampSource(BASE, (ram - BASE) / PAGE);
        FaultCore core = new FaultCore(source, BASE, ram - BASE, vcpus, Prefetch.NONE, false);
        UffdPager pager = new UffdPager(core, new UffdPager.Config(UffdPager.Mode.MISSING, 2, 0, false, List.of(), UffdPager.Pinning.NONE));
        GuestImage img = sharedReader(from, ram);
        MachineSpec spec = MachineSpec.of(ram, vcpus, img).withMemoryPreparer(pager);
        try (kvm; Machine m = new Machine(kvm, spec)) {
            RunReport report = m.run();
            assertTrue(report.clean(), () -> report.vcpus().toString());
            assertNull(pager.failure());
            long want = 0;
            for (long gpa = from; gpa < ram; gpa += PAGE) want += StampSource.word(gpa, 0, 1);
            for (VcpuResult v : report.vcpus()) assertEquals(want, v.regs().gpr[Regs.RBX], "sum read by vCPU " + v.index());
            PagingStats stats = new PagingStats(core);
            assertEquals(pages, stats.pagesInstalled(), "pages installed");
            assertEquals(pages, source.totalFills(), "source fills");
            for (long gpa = from; gpa < ram; gpa += PAGE) assertEquals(1, source.fills.get((int) ((gpa - BASE) / PAGE)));
        }
    }

    @Test
    void shouldRunTheSeqWriteWorkloadOnMinorModeMemfdRamWithReadahead() throws Exception {
        KvmHypervisor kvm = kvmOrSkip();
        userfaultfdOrSkip();
        seqWriteFromSourceOnMemfd(kvm, Prefetch.DEFAULT_READAHEAD, w -> new UffdPager.Config(UffdPager.Mode.MINOR, 2, 0, false,
                List.of(w.layout().sliceStart(1)), UffdPager.Pinning.PAIRED));
    }

    /**
     * Runs seq-write on 2 vCPUs over memfd RAM demand-paged from a {@link StampSource} by a pager
     * configured with {@code config} (closing {@code kvm}), and checks the end: the workload verified,
     * every page of every slice the source's beyond the stamp, each page fetched at most once, and
     * readahead leaving few faults. Returns the run's report.
     */
    static RunReport seqWriteFromSourceOnMemfd(KvmHypervisor kvm, Prefetch prefetch, java.util.function.Function<Workload, UffdPager.Config> config) {
        int vcpus = 2;
        long ram = 0x400000 + vcpus * (8L << 20);
        Workload w = Workloads.build("seq-write", WorkloadParams.of(ram, vcpus));
        StampSource source = new StampSource(BASE, (ram - BASE) / PAGE);
        FaultCore core = new FaultCore(source, BASE, ram - BASE, vcpus, prefetch, false);
        UffdPager pager = new UffdPager(core, config.apply(w));
        MachineSpec spec = MachineSpec.of(ram, vcpus, w.image()).withBacking(GuestRam.Backing.MEMFD).withMemoryPreparer(pager)
                .withMainSlot(0, pager.faultHandler());
        try (kvm; Machine m = new Machine(kvm, spec)) {
            RunReport report = m.run();
            assertTrue(report.clean(), () -> report.vcpus().toString());
            w.verify(m.ram().segment());
            for (int v = 0; v < vcpus; v++) {
                for (long gpa = w.layout().sliceStart(v); gpa < w.layout().sliceEnd(v); gpa += PAGE) {
                    assertEquals(StampSource.word(gpa, 8, 1), m.ram().segment().get(ValueLayout.JAVA_LONG, gpa + 8), "page 0x" + Long.toHexString(gpa));
                }
            }
            PagingStats stats = new PagingStats(core);
            assertTrue(stats.faults() < w.touchesPerVcpu() * vcpus / 8, "readahead: " + stats.faults() + " faults");
            for (int p = 0; p < source.fills.length(); p++) assertTrue(source.fills.get(p) <= 1, "page " + p + " fetched once");
            return report;
        }
    }
}
