package dev.faultline.paging.uffd;

import static dev.faultline.guest.asm.Mem.m64;
import static dev.faultline.guest.asm.Reg.*;

import dev.faultline.guest.BootProtocol;
import dev.faultline.guest.GuestImage;
import dev.faultline.guest.asm.Assembler;
import dev.faultline.hv.Hypervisor;
import dev.faultline.hv.Regs;
import dev.faultline.paging.FaultCore;
import dev.faultline.paging.Prefetch;
import dev.faultline.paging.ZeroSource;
import dev.faultline.vmm.Machine;
import dev.faultline.vmm.MachineSpec;
import dev.faultline.vmm.RunReport;
import dev.faultline.vmm.VcpuOutcome;
import dev.faultline.vmm.VcpuResult;
import java.time.Duration;

/**
 * Whether exit delivery ({@link UffdPager.Delivery#VCPU_EXIT}) works on a kvm host, found out the
 * only way it can be: a one-vCPU guest stores to a page under a userfaultfd that fails KVM's own
 * faults and loads it back. It works when the store came back as a memory-fault exit that the vCPU
 * served, and the load saw the stored value. A KVM that answers the failed access with a bare EFAULT
 * (upstream on hardware: no gpa to serve) makes the vCPU stop, and the reason says so.
 *
 * <p>The answer is kept per process (the host does not change under it): the first call runs the
 * guest (a few milliseconds), later ones return at once.
 */
public final class ExitDeliveryProbe {
    private static final long RAM = 4L << 20, TARGET = 0x300000, VALUE = 0x5eed;
    private static volatile Result cached;

    /** @param works whether exit delivery works here; {@code detail} says what the probe saw */
    public record Result(boolean works, String detail) {}

    private ExitDeliveryProbe() {}

    /** The probe's answer on {@code hv} (kvm): run once per process. */
    public static Result on(Hypervisor hv) {
        Result r = cached;
        if (r == null) cached = r = run(hv);
        return r;
    }

    /** Null when exit delivery works on {@code hv}, else why not, in one sentence. */
    public static String unavailableReason(Hypervisor hv) {
        Result r = on(hv);
        return r.works() ? null : r.detail();
    }

    private static Result run(Hypervisor hv) {
        Assembler a = new Assembler(BootProtocol.DEFAULT_LOAD_GPA);
        a.movabs(RCX, TARGET).mov(RAX, (int) VALUE).mov(m64(RCX), RAX).mov(RBX, m64(RCX));
        a.xor(EAX, EAX).out(BootProtocol.PORT_DONE, EAX);
        a.hlt();
        GuestImage image = GuestImage.of(a.assemble(), BootProtocol.DEFAULT_LOAD_GPA, BootProtocol.DEFAULT_LOAD_GPA);
        FaultCore core = new FaultCore(ZeroSource.INSTANCE, BootProtocol.IMAGE_MIN_GPA, RAM - BootProtocol.IMAGE_MIN_GPA, 1, Prefetch.NONE, false);
        UffdPager pager = new UffdPager(core, UffdPager.Config.exitDelivery(UffdPager.Mode.MISSING));
        MachineSpec spec = MachineSpec.of(RAM, 1, image).withMemoryPreparer(pager).withMainSlot(0, pager.faultHandler())
                .withExitLogLimit(0).withTimeout(Duration.ofSeconds(10));
        try (Machine m = new Machine(hv, spec)) {
            RunReport report = m.run();
            VcpuResult v = report.vcpus().get(0);
            long exits = v.exitCounts().getOrDefault("memory_fault", 0L);
            if (v.outcome() == VcpuOutcome.DONE && exits > 0 && v.regs().gpr[Regs.RBX] == VALUE) {
                return new Result(true, "a store to a missing page came back as a memory-fault exit at its gpa, the vCPU installed the "
                        + "page and the store completed (" + exits + " exit(s))");
            }
            return new Result(false, "this host's KVM does not report a missing page of a user-mode-only userfaultfd as a memory-fault "
                    + "exit with its gpa (the probe guest's store ended: " + v.outcome().name().toLowerCase() + ", " + v.detail() + ")");
        } catch (RuntimeException e) {
            return new Result(false, "the exit-delivery probe could not run: " + e.getMessage());
        }
    }
}
