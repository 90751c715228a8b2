package dev.faultline.vmm.fault;

import dev.faultline.guest.BootProtocol;
import dev.faultline.hv.Caps;
import dev.faultline.hv.Hypervisor;
import dev.faultline.hv.MemorySlot;
import dev.faultline.hv.PrivateMemory;
import dev.faultline.hv.VcpuExit;
import dev.faultline.hv.Vm;
import dev.faultline.paging.DemandPager;
import dev.faultline.paging.FaultCore;
import dev.faultline.paging.PageStates;
import dev.faultline.paging.Prefetch;
import dev.faultline.paging.exit.ExitPager;
import dev.faultline.paging.uffd.ExitDeliveryProbe;
import dev.faultline.paging.uffd.UffdPager;
import dev.faultline.sys.Errno;
import dev.faultline.vmm.MemoryFaultHandler;
import dev.faultline.vmm.MemoryPreparer;
import java.lang.foreign.MemorySegment;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLongArray;

/**
 * The VMM's memory-fault resolvers, on the faulting vCPU's own thread: it prepares the VM for a
 * {@link FaultPlan} before the vCPUs start (a {@link MemoryPreparer}) and turns each memory-fault
 * exit into a resumed vCPU (a {@link MemoryFaultHandler}), or stops the vCPU with a reason.
 *
 * <ul>
 * <li>EHWPOISON: the page is replaced from its clean copy when the VMM has one (a page it loaded
 *     before the run), else the vCPU stops: the data is lost and nothing is made up for it.
 * <li>EFAULT with the PRIVATE flag differing from the page's attribute: implicit conversion
 *     (KVM_SET_MEMORY_ATTRIBUTES); a page made private has its shared side discarded.
 * <li>EFAULT at a missing page: installed exactly once through the paging core (its clean copy, or
 *     zeros where it held nothing). On ref the page is then marked present in the slot's userfault
 *     bitmap (EXIT_ON_MISSING); on kvm the main slot's RAM is emptied and registered with a
 *     userfaultfd that fails KVM's own faults, so each first touch comes back as a memory-fault exit,
 *     and the page is installed with UFFDIO_COPY (exit delivery, {@link UffdPager.Delivery#VCPU_EXIT}).
 * <li>KVM_HC_MAP_GPA_RANGE: explicit conversion of the range, result 0 (or -KVM_EINVAL).
 * </ul>
 * Anything else stops the vCPU; {@link dev.faultline.vmm.Machine} reports the gpa, flags and errno.
 *
 * <p>Threading: every vCPU calls in concurrently. No lock on the missing-page path (the paging core
 * is lock-free); conversions are serialised inside the backend.
 */
public final class FaultResolver implements MemoryFaultHandler, MemoryPreparer {
    public static final String INSTALLED_COPY = "installed the page from its clean copy", INSTALLED_ZERO = "installed a zero page";
    public static final String TO_PRIVATE = "converted to private (implicit)", TO_SHARED = "converted to shared (implicit)";
    public static final String REPLACED = "replaced the poisoned page from its clean copy";
    public static final String ALREADY = "nothing to do: resolved meanwhile by another vCPU";

    private static final long MAIN = BootProtocol.IMAGE_MIN_GPA;

    private final FaultPlan plan;
    private final int vcpus;
    private final String[] last;
    /** Pages poisoned before the run ({@link FaultPlan#poison()}), and those of them not replaced yet. */
    private final Set<Long> poisoned = ConcurrentHashMap.newKeySet(), unreplaced = ConcurrentHashMap.newKeySet();
    private Vm vm;
    private MemorySegment ram;
    private long ramSize;
    private CleanCopies copies;
    /** Exit on missing: the pager that installs the main slot's pages (ExitPager on ref, UffdPager on kvm); else null. */
    private DemandPager pager;
    private Session pagerSession = () -> { };
    private AtomicLongArray privateBits;
    private VcpuExit.MemoryFault backgroundFault;

    public FaultResolver(FaultPlan plan, int vcpus) {
        this.plan = plan;
        this.vcpus = vcpus;
        this.last = new String[vcpus];
    }

    public FaultPlan plan() { return plan; }

    /** The VM type the plan needs. */
    public int vmType() { return plan.hasPrivate() ? Caps.VM_TYPE_SW_PROTECTED : Caps.VM_TYPE_DEFAULT; }

    /**
     * Says in one sentence why {@code hv} cannot run this plan, or returns null. Nothing is pretended:
     * a mechanism the backend lacks is refused before the guest starts.
     */
    public static String unsupportedReason(FaultPlan plan, Hypervisor hv) {
        if (hv.name().equals("ref")) return null;
        if (plan.exitOnMissing() && !plan.poison().isEmpty()) {
            return "--exit-on-missing with --poison: on kvm both need a userfaultfd over the same RAM (exit delivery, and the poison "
                    + "marker), and a page can be registered with one only; use --backend ref, or one of the two";
        }
        if (plan.exitOnMissing()) {
            String why = ExitDeliveryProbe.unavailableReason(hv);
            if (why != null) return "--exit-on-missing on kvm goes through exit delivery, and " + why + "; use --backend ref";
        }
        if (plan.hasPrivate() && (hv.checkExtension(Caps.VM_TYPES) & (1L << Caps.VM_TYPE_SW_PROTECTED)) == 0) {
            return String.format("--private needs a VM type with memory attributes; this kernel offers KVM_CAP_VM_TYPES = 0x%x "
                    + "(only the default type, whose KVM_CAP_MEMORY_ATTRIBUTES is 0); use --backend ref", hv.checkExtension(Caps.VM_TYPES));
        }
        if (plan.memfaultReasons() != -1) {
            return "--memfault-reasons needs seed 000's per-reason capability, which upstream KVM never merged; use --backend ref";
        }
        if (plan.asyncPf()) return "--async-pf resolves pages through userspace in the background, which only the ref backend does";
        return null;
    }

    // ---------------------------------------------------------------- preparing the VM

    @Override
    public Session prepare(Context c) {
        vm = c.vm();
        ram = c.ram().segment();
        ramSize = c.ram().size();
        long mainSize = ramSize - MAIN;
        long[] unavailable = plan.unavailable().stream().mapToLong(Long::longValue).toArray();
        copies = CleanCopies.capture(ram, MAIN, ramSize, unavailable);
        MemorySlot main = vm.slotAt(MAIN);
        boolean reslot = false;
        if (plan.hasPrivate()) {
            if (plan.privateGpa() < MAIN || plan.privateGpa() + plan.privateSize() > ramSize) {
                throw new IllegalArgumentException(String.format("--private [0x%x, +0x%x) must lie in the main slot [0x%x, 0x%x)",
                        plan.privateGpa(), plan.privateSize(), MAIN, ramSize));
            }
            for (long g = plan.privateGpa(); g < plan.privateGpa() + plan.privateSize(); g += 4096) {
                if (copies.hadData(g)) {
                    throw new IllegalArgumentException(String.format("--private range holds image data at gpa 0x%x; the VMM cannot "
                            + "write private memory, so the image must stay shared", g));
                }
            }
            main = main.withGuestMemfd(vm.createGuestMemfd(mainSize, 0), 0);
            privateBits = new AtomicLongArray((int) ((mainSize >>> 12) + 63) >>> 6);
            reslot = true;
        }
        if (plan.exitOnMissing()) {
            // The VMM keeps what it loaded as clean copies and drops it from RAM: every page is missing.
            // The shared exit-on-missing pager (as lazy restore and post-copy use it) serves them from the
            // clean copies; on ref one extra lane for the async-PF worker.
            FaultCore core = new FaultCore(copies, MAIN, mainSize, vcpus + 1, Prefetch.NONE, false);
            if (c.vm().hypervisor().name().equals("ref")) {
                for (long g = MAIN; g < ramSize; g += 4096) if (copies.hadData(g)) ram.asSlice(g, 4096).fill((byte) 0);
                ExitPager exits = new ExitPager(core, 1);
                main = exits.attach(main, c.ram().memory(), vcpus + 1);
                pager = exits;
                reslot = true;
            } else {
                c.ram().memory().discard(MAIN, mainSize);
                UffdPager exits = new UffdPager(core, UffdPager.Config.exitDelivery(UffdPager.Mode.MISSING));
                pagerSession = exits.prepare(c);
                pager = exits;
            }
        }
        if (reslot) {
            MemorySlot old = vm.slotAt(MAIN);
            vm.setMemorySlot(new MemorySlot(old.slot(), 0, old.gpa(), 0, old.memory(), old.memoryOffset(), null, 0));
            vm.setMemorySlot(main);
        }
        if (plan.hasPrivate()) {
            vm.setMemoryAttributes(plan.privateGpa(), plan.privateSize(), Caps.MEMORY_ATTRIBUTE_PRIVATE);
            for (long g = plan.privateGpa(); g < plan.privateGpa() + plan.privateSize(); g += 4096) setPrivateBit(g, true);
            vm.enableCap(Caps.EXIT_HYPERCALL, PrivateMemory.EXIT_HYPERCALL_MAP_GPA_RANGE);
        }
        for (long p : plan.poison()) {
            if (p < 0 || p >= ramSize) throw new IllegalArgumentException(String.format("--poison 0x%x lies outside the guest's RAM [0, 0x%x)", p, ramSize));
            vm.injectPoison(p);
            poisoned.add(p & ~0xfffL);
            unreplaced.add(p & ~0xfffL);
        }
        if (plan.memfaultReasons() != -1) vm.enableCap(Caps.FAULTLINE_MEMORY_FAULT_EXIT, plan.memfaultReasons());
        if (plan.asyncPf()) {
            backgroundFault = new VcpuExit.MemoryFault();
            vm.enableAsyncPageFaults(this::resolveInBackground, false);
        }
        Session paging = pagerSession;
        return new Session() {
            @Override public void vcpuThreadStarted(int index) { paging.vcpuThreadStarted(index); }
            @Override public void vcpuThreadStopping(int index) { paging.vcpuThreadStopping(index); }

            @Override
            public void close() {
                paging.close();   // kvm: unregistered, so RAM can be read and written from Java again
                replaceLeftoverPoison();
            }
        };
    }

    /**
     * After the last vCPU stopped: pages still poisoned (their data lost, no clean copy) become zero
     * pages, so that the host can read and hash RAM (on kvm a host read of a poisoned page is a SIGBUS
     * the JVM does not survive) and the hash is the same on every backend. No guest runs any more.
     */
    private void replaceLeftoverPoison() {
        synchronized (unreplaced) {
            if (unreplaced.isEmpty()) return;
            MemorySegment zeros = MemorySegment.ofArray(new byte[4096]);
            for (long page : unreplaced) vm.replacePoisoned(page, zeros);
            unreplaced.clear();
        }
    }

    /** On the backend's async worker thread (one thread): installs like a fault of an extra "vCPU". */
    private boolean resolveInBackground(long gpaPage) {
        backgroundFault.fill(0, gpaPage, 4096, Errno.EFAULT, VcpuExit.MemoryFault.Origin.KERNEL);
        return pager.faultHandler().resolve(vcpus, backgroundFault) == null;
    }

    public CleanCopies cleanCopies() { return copies; }

    // ---------------------------------------------------------------- resolving exits

    @Override
    public String resolve(int vcpuIndex, VcpuExit.MemoryFault fault) {
        long page = fault.gpa() & ~0xfffL;
        if (fault.errno() == Errno.EHWPOISON) {
            byte[] copy = copies == null ? null : copies.copyOf(page);
            if (copy == null) {
                return String.format("the poisoned page at gpa 0x%x has no clean copy (it was not loaded by the VMM), so its "
                        + "data is lost; not replacing it with anything made up", page);
            }
            boolean replacedHere = false;
            synchronized (unreplaced) { // vCPUs that hit the same page: one replaces it, the others find it done
                if (unreplaced.contains(page)) {
                    vm.replacePoisoned(page, MemorySegment.ofArray(copy));
                    unreplaced.remove(page);
                    replacedHere = true;
                }
            }
            last[vcpuIndex] = replacedHere ? REPLACED : ALREADY;
            return null;
        }
        if (fault.errno() != Errno.EFAULT) return "unexpected errno " + Errno.name(fault.errno());
        if (privateBits != null && inMain(page)) {
            boolean wantPrivate = fault.isPrivate();
            if (wantPrivate != isPrivate(page)) {
                convert(page, 1, wantPrivate);
                last[vcpuIndex] = wantPrivate ? TO_PRIVATE : TO_SHARED;
                return null;
            }
        } else if (fault.isPrivate()) {
            return "a private access outside the VM's private-capable memory";
        }
        if (pager != null && pager.core().contains(page)) {
            byte before = pager.core().states().get(pager.core().pageOf(page));
            if (before == PageStates.PRESENT) {
                last[vcpuIndex] = ALREADY;
                return null;
            }
            String failure = pager.faultHandler().resolve(vcpuIndex, fault);   // FETCHING: waits until the other vCPU's install is done
            if (failure == null) last[vcpuIndex] = before == PageStates.FETCHING ? ALREADY : copies.hadData(page) ? INSTALLED_COPY : INSTALLED_ZERO;
            return failure;
        }
        if (privateBits != null && inMain(page)) {
            // Kind and attribute agree and nothing is missing: another vCPU converted it meanwhile.
            last[vcpuIndex] = ALREADY;
            return null;
        }
        if (poisoned.contains(page) && !unreplaced.contains(page)) {
            // The access failed on the poison, and another vCPU replaced the page before this exit was
            // looked at (on kvm the exit then no longer says EHWPOISON): the page is good now.
            last[vcpuIndex] = ALREADY;
            return null;
        }
        return "no resolver applies (the page is not missing, poisoned or of the wrong private/shared kind)";
    }

    @Override
    public String lastResolution(int vcpuIndex) { return last[vcpuIndex]; }

    @Override
    public String hypercall(int vcpuIndex, VcpuExit.Hypercall call) {
        if (call.nr() != VcpuExit.Hypercall.KVM_HC_MAP_GPA_RANGE || privateBits == null) return null;
        long gpa = call.arg(0), npages = call.arg(1), attrs = call.arg(2);
        if (gpa < MAIN || npages <= 0 || npages > (ramSize - gpa) >>> 12) {
            call.complete(-PrivateMemory.KVM_EINVAL);
            return "refused: range outside the private-capable memory";
        }
        boolean toPrivate = (attrs & PrivateMemory.MAP_GPA_RANGE_ENCRYPTED) != 0;
        convert(gpa, npages, toPrivate);
        call.complete(0);
        return toPrivate ? "converted to private (explicit, MAP_GPA_RANGE)" : "converted to shared (explicit, MAP_GPA_RANGE)";
    }

    private void convert(long gpa, long npages, boolean toPrivate) {
        vm.setMemoryAttributes(gpa, npages << 12, toPrivate ? Caps.MEMORY_ATTRIBUTE_PRIVATE : 0);
        for (long i = 0; i < npages; i++) {
            long g = gpa + (i << 12);
            if (setPrivateBit(g, toPrivate) && toPrivate) ram.asSlice(g, 4096).fill((byte) 0);   // discard the shared side
        }
    }

    private boolean inMain(long gpa) { return gpa >= MAIN && gpa < ramSize; }

    private boolean isPrivate(long gpa) {
        long p = (gpa - MAIN) >>> 12;
        return (privateBits.get((int) (p >>> 6)) & (1L << (p & 63))) != 0;
    }

    /** Returns whether the bit changed. */
    private boolean setPrivateBit(long gpa, boolean priv) {
        long p = (gpa - MAIN) >>> 12;
        int w = (int) (p >>> 6);
        long bit = 1L << (p & 63);
        while (true) {
            long cur = privateBits.get(w);
            long next = priv ? cur | bit : cur & ~bit;
            if (cur == next) return false;
            if (privateBits.compareAndSet(w, cur, next)) return true;
        }
    }
}
