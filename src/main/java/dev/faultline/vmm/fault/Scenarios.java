package dev.faultline.vmm.fault;

import static dev.faultline.guest.asm.Mem.abs;
import static dev.faultline.guest.asm.Mem.m64;
import static dev.faultline.guest.asm.Reg.*;

import dev.faultline.guest.BootProtocol;
import dev.faultline.guest.BootSetup;
import dev.faultline.guest.GuestImage;
import dev.faultline.guest.asm.Assembler;
import dev.faultline.guest.asm.Label;
import dev.faultline.hv.Caps;
import dev.faultline.hv.ExitReason;
import dev.faultline.hv.Hypervisor;
import dev.faultline.hv.MemoryFaultReasons;
import dev.faultline.hv.MemorySlot;
import dev.faultline.hv.PrivateMemory;
import dev.faultline.hv.Regs;
import dev.faultline.hv.UserfaultBitmap;
import dev.faultline.hv.VcpuExit;
import dev.faultline.ref.RefHypervisor;
import dev.faultline.ref.RefVcpu;
import dev.faultline.ref.RefVm;
import dev.faultline.sys.Errno;
import dev.faultline.sys.ErrnoException;
import dev.faultline.sys.HostMemory;
import dev.faultline.vmm.ExitLog;
import dev.faultline.vmm.Machine;
import dev.faultline.vmm.MachineSpec;
import dev.faultline.vmm.RunReport;
import dev.faultline.vmm.VcpuOutcome;
import dev.faultline.vmm.VcpuResult;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Function;

/**
 * One runnable demonstration per memory-fault mechanism ({@code ./faultline scenario NAME}). Each runs
 * a small guest through the VMM (or, for the hypervisor-internal audits, straight on a ref VM), checks
 * the exact exits, their resolution and the guest-visible result, and says plainly what a backend
 * cannot do on this machine.
 */
public final class Scenarios {
    private Scenarios() {}

    public record Scenario(String name, String description, Function<Hypervisor, ScenarioResult> run) {}

    static final long RAM = 16L << 20, LOAD = BootProtocol.DEFAULT_LOAD_GPA, DATA = LOAD + 0x1000;
    static final long DATA_VALUE = 37;
    static final long ALIAS_VA = 0x80_0000_0000L;

    public static final List<Scenario> ALL = List.of(
            new Scenario("exit-on-missing", "every page from 1 MiB up starts missing; each access exits with READ/WRITE/EXEC and "
                    + "completes exactly once after the VMM installed the page", Scenarios::exitOnMissing),
            new Scenario("private-implicit", "a private/shared mismatch exits with PRIVATE set or clear; the VMM converts the page "
                    + "(KVM_SET_MEMORY_ATTRIBUTES) and the side left behind is discarded", Scenarios::privateImplicit),
            new Scenario("private-explicit", "the guest asks for conversions with KVM_HC_MAP_GPA_RANGE (vmcall); the VMM converts "
                    + "and returns the result in RAX", Scenarios::privateExplicit),
            new Scenario("pagewalk", "a missing page of the guest's own page tables exits at that page's gpa, as a WRITE "
                    + "(the walk sets Accessed bits), before the data page", Scenarios::pagewalk),
            new Scenario("async-pf-error", "missing pages resolve in the background; one whose background fetch fails reaches "
                    + "userspace as one memory-fault exit instead of an endless retry (seed 004)", Scenarios::asyncPfError),
            new Scenario("poison-replace", "a poisoned page the VMM has a clean copy of gives EHWPOISON and is replaced",
                    Scenarios::poisonReplace),
            new Scenario("poison-stop", "a poisoned page without a clean copy stops the vCPU with a report naming gpa, flags and "
                    + "errno; nothing is made up", Scenarios::poisonStop),
            new Scenario("stale-data", "the exit is reset at every entry, filled only with EFAULT/EHWPOISON, only by the vCPU's "
                    + "own thread, never twice in one run, and never left out where required", Scenarios::staleData),
            new Scenario("opt-in", "KVM_CAP_MEMORY_FAULT_INFO is informational; seed 000's per-reason capability rejects "
                    + "unknown bits with the correct bitwise check", Scenarios::optIn));

    public static Scenario byName(String name) {
        for (Scenario s : ALL) if (s.name().equals(name)) return s;
        return null;
    }

    // ---------------------------------------------------------------- running a guest through the VMM

    /** A finished machine run and what the scenario reads from RAM afterwards. */
    record Run(RunReport report, long[] ramValues, long asyncAttempts) {
        VcpuResult vcpu(int i) { return report.vcpus().get(i); }
        List<String> faults(int vcpu) {
            List<String> out = new ArrayList<>();
            for (ExitLog.Entry e : vcpu(vcpu).exits().entries()) {
                if (e.exit().reason().equals("memory_fault")) out.add(fault(e));
            }
            return out;
        }
    }

    /**
     * "errno flags page" of a memory-fault exit. The page, not the exact gpa: ref names the page, and
     * kvm's exits that come from an MMIO exit inside a memslot name the exact access (gpa and length).
     */
    static String fault(ExitLog.Entry e) {
        var f = e.exit().fields();
        return f.get("errno") + " " + f.get("flags") + " " + hex(Long.decode(f.get("gpa")) & ~0xfffL);
    }

    static Run run(Hypervisor hv, GuestImage image, int vcpus, FaultPlan plan, long... readGpas) {
        FaultResolver r = new FaultResolver(plan, vcpus);
        MachineSpec spec = MachineSpec.of(RAM, vcpus, image).withExitLogLimit(10_000).withTimeout(java.time.Duration.ofSeconds(60));
        if (plan.any()) spec = spec.withVmType(r.vmType()).withMainSlot(0, r).withMemoryPreparer(r);
        try (Machine m = new Machine(hv, spec)) {
            RunReport report = m.run();
            long[] values = new long[readGpas.length];
            for (int i = 0; i < readGpas.length; i++) values[i] = m.ram().segment().get(ValueLayout.JAVA_LONG_UNALIGNED, readGpas[i]);
            long attempts = 0;
            for (var v : m.vcpus()) if (v instanceof RefVcpu rv) attempts += rv.asyncPageFaultAttempts();
            return new Run(report, values, attempts);
        }
    }

    /** An image: the code page(s), then {@code extraPages} pages (the first holds {@link #DATA_VALUE}), then {@code tail}. */
    static GuestImage image(Assembler code, int extraPages, long[]... pagesWithEntries) {
        byte[] c = code.assemble();
        if (c.length > 0x1000) throw new IllegalStateException("scenario code must fit one page");
        int pages = 1 + Math.max(extraPages, pagesWithEntries.length + 1);
        ByteBuffer b = ByteBuffer.allocate(pages * 0x1000).order(ByteOrder.LITTLE_ENDIAN);
        b.put(c);
        b.putLong(0x1000, DATA_VALUE);
        for (int i = 0; i < pagesWithEntries.length; i++) {
            long[] entries = pagesWithEntries[i];
            for (int k = 0; k < entries.length; k++) b.putLong(0x2000 + i * 0x1000 + k * 8, entries[k]);
        }
        return GuestImage.of(b.array(), LOAD, LOAD);
    }

    static String hex(long v) { return "0x" + Long.toHexString(v); }

    private static boolean isRef(Hypervisor hv) { return hv.name().equals("ref"); }

    /** Measured on this host with exit delivery (docs/memory-faults.md). */
    private static final String NO_WALK_EXIT = "KVM reports a missing page only for the guest's own accesses: with every page from 1 MiB up "
            + "under a userfaultfd that fails KVM's faults (exit delivery, as exit-on-missing runs on kvm), a walk through a missing "
            + "page-table page gives no exit naming it: KVM injects a page fault and this guest, with no IDT, triple-faults (a shutdown "
            + "exit); seed 003's exit for page-walk faults is not in KVM";

    // ---------------------------------------------------------------- exit-on-missing

    static ScenarioResult exitOnMissing(Hypervisor hv) {
        ScenarioResult res = new ScenarioResult("exit-on-missing", hv.name(), byName("exit-on-missing").description());
        Assembler a = new Assembler(LOAD);
        Label skip = a.newLabel(), loop = a.newLabel();
        a.test(RDI, RDI).jnz(skip);
        a.add(abs(64, DATA), 5);                       // read-modify-write of an image page: its clean copy is installed
        a.bind(skip);
        a.mov(RAX, RDI).shl(RAX, 12).add(RAX, 0x500000);
        a.mov(m64(RAX), RDI);                          // each vCPU stores to its own zero page
        a.mov(RCX, 1000);
        a.bind(loop).lock().inc(abs(64, 0x600000)).dec(RCX).jnz(loop);   // a shared counter page
        a.mov(RDX, abs(64, 0x700008));                 // a load from a zero page
        a.hlt();
        GuestImage img = image(a, 1);
        FaultPlan plan = new FaultPlan(true, List.of(), -1, 0, -1, false, List.of());
        Run one = run(hv, img, 1, plan, DATA, 0x500000, 0x600000);
        // The locked increment of a missing page: ref names its write; KVM emulates it as an access to
        // unreachable memory, which exits first for the read of the old value (kvm: exit delivery
        // through a user-mode-only userfaultfd, docs/paging.md).
        String lockedRmw = isRef(hv) ? "0x2" : "0x1";
        List<String> want = List.of("EFAULT 0x4 " + hex(LOAD), "EFAULT 0x1 " + hex(DATA), "EFAULT 0x2 0x500000",
                "EFAULT " + lockedRmw + " 0x600000", "EFAULT 0x1 0x700000");
        res.check("1 vCPU: the exits in order (EXEC code, READ image data, WRITE, " + (isRef(hv) ? "WRITE" : "READ of the locked increment")
                + ", READ)", one.faults(0).equals(want), String.join(", ", one.faults(0)));
        res.check("a read-modify-write completed exactly once on the installed data", one.ramValues()[0] == DATA_VALUE + 5,
                "data " + one.ramValues()[0] + " (want " + (DATA_VALUE + 5) + ")");
        res.check("a load sees the installed page", one.vcpu(0).outcome() == VcpuOutcome.HALTED && one.vcpu(0).regs().gpr[Regs.RDX] == 0,
                "rdx " + hex(one.vcpu(0).regs().gpr[Regs.RDX]) + ", " + one.vcpu(0).detail());
        List<String> res0 = new ArrayList<>();
        for (ExitLog.Entry e : one.vcpu(0).exits().entries()) if (e.resolution() != null) res0.add(e.resolution());
        res.check("each exit was resolved by installing the page", res0.equals(List.of(FaultResolver.INSTALLED_COPY,
                FaultResolver.INSTALLED_COPY, FaultResolver.INSTALLED_ZERO, FaultResolver.INSTALLED_ZERO, FaultResolver.INSTALLED_ZERO)),
                String.join(", ", res0));
        Run two = run(hv, img, 2, plan, DATA, 0x600000, 0x501000);
        Run base = run(hv, img, 2, FaultPlan.NONE, DATA, 0x600000, 0x501000);
        res.check("2 vCPUs: 2000 locked increments counted exactly once each", two.ramValues()[1] == 2000 && two.report().clean(),
                "counter " + two.ramValues()[1]);
        res.check("2 vCPUs: RAM equals a run without exit on missing", two.report().ramSha256().equals(base.report().ramSha256()),
                "sha256 " + two.report().ramSha256().substring(0, 16) + "... vs " + base.report().ramSha256().substring(0, 16) + "...");
        res.check("2 vCPUs: each vCPU got its own exits", two.faults(1).contains("EFAULT 0x2 0x501000") && !two.faults(0).contains("EFAULT 0x2 0x501000"),
                "vCPU 1: " + String.join(", ", two.faults(1)));
        return res;
    }

    // ---------------------------------------------------------------- private memory

    /** Builds PML4' at 0x300000 (entry 0 = the boot identity map) → PDPT' → PD' → PT' mapping ALIAS_VA + i*4K → 0x600000 + i*4K. */
    static void aliasTables(Assembler a, long... leaves) {
        a.mov(RAX, abs(64, BootProtocol.PML4_GPA)).mov(abs(64, 0x300000), RAX);
        a.mov(abs(64, 0x300008), 0x301003).mov(abs(64, 0x301000), 0x302003).mov(abs(64, 0x302000), 0x303003);
        for (int i = 0; i < leaves.length; i++) a.movabs(RAX, leaves[i]).mov(abs(64, 0x303000 + 8L * i), RAX);
        a.mov(RAX, 0x300000).movCr3(RAX).movabs(RSI, ALIAS_VA);
    }

    private static String noPrivate(Hypervisor hv) {
        return String.format("this kernel's KVM_CAP_VM_TYPES is %s (no VM_TYPE_SW_PROTECTED, bit 1) and KVM_CAP_MEMORY_ATTRIBUTES on a "
                + "default VM is %d, so there is no private memory to convert; guest_memfd alone (KVM_CAP_GUEST_MEMFD = %d) cannot "
                + "make pages private", hex(hv.checkExtension(Caps.VM_TYPES)), hv.checkExtension(Caps.MEMORY_ATTRIBUTES),
                hv.checkExtension(Caps.GUEST_MEMFD));
    }

    static ScenarioResult privateImplicit(Hypervisor hv) {
        ScenarioResult res = new ScenarioResult("private-implicit", hv.name(), byName("private-implicit").description());
        if ((hv.checkExtension(Caps.VM_TYPES) & (1L << Caps.VM_TYPE_SW_PROTECTED)) == 0) {
            return res.notSupported("implicit conversion exits", noPrivate(hv));
        }
        long enc = PrivateMemory.ENCRYPTION_MASK;
        Assembler a = new Assembler(LOAD);
        aliasTables(a, enc | 0x600003, 0x601003, enc | 0x602003);
        a.mov(m64(RSI), 0x1111);                        // private store to a private page: no exit
        a.mov(abs(64, 0x601000), 0x2222);                // shared store to a private page: exit WRITE, to shared
        a.mov(abs(64, 0x602000), 0x5555);                // shared store to a shared page
        a.mov(RCX, m64(RSI, 0x2000));                    // private load of a shared page: exit READ|PRIVATE, to private
        a.mov(RDX, m64(RSI));
        a.hlt();
        FaultPlan plan = new FaultPlan(false, List.of(), 0x600000, 0x2000, -1, false, List.of());
        Run r = run(hv, image(a, 1), 1, plan, 0x600000, 0x601000, 0x602000);
        res.check("exits: WRITE (PRIVATE clear) at 0x601000, then READ|PRIVATE at 0x602000",
                r.faults(0).equals(List.of("EFAULT 0x2 0x601000", "EFAULT 0x9 0x602000")), String.join(", ", r.faults(0)));
        List<String> how = new ArrayList<>();
        for (ExitLog.Entry e : r.vcpu(0).exits().entries()) if (e.resolution() != null) how.add(e.resolution());
        res.check("the VMM converted each page the way the access asked", how.equals(List.of(FaultResolver.TO_SHARED, FaultResolver.TO_PRIVATE)),
                String.join(", ", how));
        Regs g = r.vcpu(0).regs();
        res.check("the private load read the private store", g.gpr[Regs.RDX] == 0x1111, "rdx " + hex(g.gpr[Regs.RDX]));
        res.check("the private store never reached the shared mapping", r.ramValues()[0] == 0, "shared 0x600000 = " + hex(r.ramValues()[0]));
        res.check("the converted-to-shared page holds the shared store", r.ramValues()[1] == 0x2222, "shared 0x601000 = " + hex(r.ramValues()[1]));
        res.check("converting to private discarded the shared side; the private side starts empty",
                r.ramValues()[2] == 0 && g.gpr[Regs.RCX] == 0, "shared 0x602000 = " + hex(r.ramValues()[2]) + ", private load " + hex(g.gpr[Regs.RCX]));
        return res;
    }

    static ScenarioResult privateExplicit(Hypervisor hv) {
        ScenarioResult res = new ScenarioResult("private-explicit", hv.name(), byName("private-explicit").description());
        if ((hv.checkExtension(Caps.VM_TYPES) & (1L << Caps.VM_TYPE_SW_PROTECTED)) == 0) {
            return res.notSupported("KVM_HC_MAP_GPA_RANGE conversions", noPrivate(hv)
                    + "; KVM_CAP_EXIT_HYPERCALL here is " + hex(hv.checkExtension(Caps.EXIT_HYPERCALL)));
        }
        long enc = PrivateMemory.ENCRYPTION_MASK;
        Assembler a = new Assembler(LOAD);
        aliasTables(a, enc | 0x600003, enc | 0x601003);
        a.mov(m64(RSI), 0x1111);                                                        // private store
        a.mov(EAX, 12).mov(EBX, 0x600000).mov(ECX, 1).xor(EDX, EDX).vmcall();          // to shared
        a.mov(R8, RAX);
        a.mov(EAX, 12).mov(EBX, 0x600001).vmmcall().mov(R9, RAX);                      // misaligned: -KVM_EINVAL
        a.mov(R11, m64(RSI));                                                           // private load of a shared page
        a.mov(EAX, 12).mov(EBX, 0x601000).mov(ECX, 1).mov(EDX, 0x10).vmcall().mov(R10, RAX);   // 0x601000 to private
        a.mov(m64(RSI, 0x1000), 0x3333);                                                // private store: no exit now
        a.hlt();
        FaultPlan plan = new FaultPlan(false, List.of(), 0x600000, 0x1000, -1, false, List.of());
        Run r = run(hv, image(a, 1), 1, plan, 0x600000);
        List<String> calls = new ArrayList<>();
        for (ExitLog.Entry e : r.vcpu(0).exits().entries()) {
            if (e.exit().reason().equals("hypercall")) {
                var f = e.exit().fields();
                calls.add(f.get("nr") + "(" + f.get("arg0") + "," + f.get("arg1") + "," + f.get("arg2") + ") -> " + e.resolution());
            }
        }
        res.check("two MAP_GPA_RANGE exits with gpa, pages and attributes, converted explicitly", calls.equals(List.of(
                "12(0x600000,0x1,0x0) -> converted to shared (explicit, MAP_GPA_RANGE)",
                "12(0x601000,0x1,0x10) -> converted to private (explicit, MAP_GPA_RANGE)")), String.join("; ", calls));
        Regs g = r.vcpu(0).regs();
        res.check("the VMM's result reached RAX; a misaligned gpa gets -KVM_EINVAL without an exit",
                g.gpr[Regs.R8] == 0 && g.gpr[Regs.R9] == -22 && g.gpr[Regs.R10] == 0,
                "r8 " + g.gpr[Regs.R8] + ", r9 " + g.gpr[Regs.R9] + ", r10 " + g.gpr[Regs.R10]);
        res.check("after the explicit conversion to shared, a private access exits (READ|PRIVATE) and converts back",
                r.faults(0).equals(List.of("EFAULT 0x9 0x600000")), String.join(", ", r.faults(0)));
        res.check("the private data was discarded by the conversion", g.gpr[Regs.R11] == 0, "private load after round trip " + hex(g.gpr[Regs.R11]));
        res.check("the guest halted cleanly", r.vcpu(0).outcome() == VcpuOutcome.HALTED, r.vcpu(0).detail());
        return res;
    }

    // ---------------------------------------------------------------- page-table walks

    static ScenarioResult pagewalk(Hypervisor hv) {
        ScenarioResult res = new ScenarioResult("pagewalk", hv.name(), byName("pagewalk").description());
        if (!isRef(hv)) return res.notSupported("exits naming a missing page-table page", NO_WALK_EXIT);
        long pdpt = LOAD + 0x2000, pd = LOAD + 0x3000, pt = LOAD + 0x4000;
        Assembler a = new Assembler(LOAD);
        a.mov(RAX, abs(64, BootProtocol.PML4_GPA)).mov(abs(64, 0x300000), RAX);   // PML4' (a zero page) gets the identity map
        a.mov(abs(64, 0x300008), pdpt | 3);
        a.mov(RAX, 0x300000).movCr3(RAX).movabs(RBX, ALIAS_VA);
        a.mov(RAX, m64(RBX));
        a.hlt();
        GuestImage img = image(a, 1, new long[] {pd | 3}, new long[] {pt | 3}, new long[] {DATA | 3});
        FaultPlan plan = new FaultPlan(true, List.of(), -1, 0, -1, false, List.of());
        Run r = run(hv, img, 1, plan, pt);
        List<String> want = List.of("EFAULT 0x4 " + hex(LOAD), "EFAULT 0x2 0x300000", "EFAULT 0x2 " + hex(pdpt),
                "EFAULT 0x2 " + hex(pd), "EFAULT 0x2 " + hex(pt), "EFAULT 0x1 " + hex(DATA));
        res.check("the walk's missing tables exit at their own gpa as WRITEs, in walk order, then the data page as a READ",
                r.faults(0).equals(want), String.join(", ", r.faults(0)));
        res.check("the load through the guest's tables saw the data", r.vcpu(0).regs().gpr[Regs.RAX] == DATA_VALUE,
                "rax " + r.vcpu(0).regs().gpr[Regs.RAX]);
        res.check("the walk set Accessed in the PT entry once the page was installed", (r.ramValues()[0] & 0x20) != 0,
                "PT[0] = " + hex(r.ramValues()[0]));
        return res;
    }

    // ---------------------------------------------------------------- async page faults

    static ScenarioResult asyncPfError(Hypervisor hv) {
        ScenarioResult res = new ScenarioResult("async-pf-error", hv.name(), byName("async-pf-error").description());
        if (!isRef(hv)) {
            return res.notSupported("background resolution through userspace and its error path", "KVM's async page faults are "
                    + "in-kernel (a worker does get_user_pages; the guest opts in with MSR_KVM_ASYNC_PF_EN) and seed 004's error_gfn "
                    + "fix is kernel code; userspace can neither supply the background resolver nor observe the retries");
        }
        Assembler a = new Assembler(LOAD);
        a.mov(RAX, abs(64, 0x500000));   // resolved in the background
        a.mov(RCX, abs(64, 0x666000));   // its background fetch fails
        a.hlt();
        GuestImage img = image(a, 1);
        FaultPlan plan = new FaultPlan(true, List.of(), -1, 0, -1, true, List.of(0x666000L));
        Run r = run(hv, img, 1, plan);
        res.check("exactly one memory-fault exit, for the failing gfn (READ, EFAULT)", r.faults(0).equals(List.of("EFAULT 0x1 0x666000")),
                String.join(", ", r.faults(0)));
        res.check("background attempts bounded: code, 0x500000 and 0x666000 once each", r.asyncAttempts() == 3, r.asyncAttempts() + " attempts");
        VcpuResult v = r.vcpu(0);
        res.check("the VMM's synchronous retry failed too and stopped the vCPU with gpa, flags and errno",
                v.outcome() == VcpuOutcome.UNRESOLVED_MEMORY_FAULT && v.detail().contains("gpa 0x666000") && v.detail().contains("flags 0x1")
                        && v.detail().contains("EFAULT"), v.detail());
        long naive = naiveRetries(img);
        res.check("the naive design (error ignored) retries the same access without end: stopped only by a kick",
                naive >= NAIVE_LIMIT, naive + " background attempts before the kick");
        return res;
    }

    static final int NAIVE_LIMIT = 1000;

    /** The same guest on a bare ref VM with naive async page faults: counts retries until a kick ends it. */
    static long naiveRetries(GuestImage img) {
        try (BareRef b = new BareRef(img, Caps.VM_TYPE_DEFAULT, true)) {
            b.vm.enableAsyncPageFaults(gpa -> {
                if (gpa == 0x666000) return false;
                b.missing.markPresent(gpa, 0x1000);
                return true;
            }, true);
            Thread kicker = Thread.ofPlatform().start(() -> {
                long deadline = System.nanoTime() + 20_000_000_000L;
                while (b.vcpu.asyncPageFaultAttempts() < NAIVE_LIMIT && System.nanoTime() < deadline) Thread.onSpinWait();
                b.vcpu.kick();
            });
            VcpuExit e = b.vcpu.run();
            try {
                kicker.join();
            } catch (InterruptedException ie) {
                Thread.currentThread().interrupt();
            }
            return e.reason() == ExitReason.INTR ? b.vcpu.asyncPageFaultAttempts() : -1;
        }
    }

    // ---------------------------------------------------------------- poison

    static ScenarioResult poisonReplace(Hypervisor hv) {
        ScenarioResult res = new ScenarioResult("poison-replace", hv.name(), byName("poison-replace").description());
        Assembler a = new Assembler(LOAD);
        a.mov(RAX, abs(64, DATA)).add(RAX, 1).mov(abs(64, DATA), RAX).hlt();
        FaultPlan plan = new FaultPlan(false, List.of(DATA), -1, 0, -1, false, List.of());
        Run r = run(hv, image(a, 1), 1, plan, DATA);
        res.check("one EHWPOISON exit (READ) at the poisoned page", r.faults(0).equals(List.of("EHWPOISON 0x1 " + hex(DATA))),
                String.join(", ", r.faults(0)));
        String how = r.vcpu(0).exits().entries().stream().filter(e -> e.resolution() != null).map(ExitLog.Entry::resolution).findFirst().orElse("");
        res.check("the VMM replaced it from its clean copy", how.equals(FaultResolver.REPLACED), how);
        res.check("the guest read the clean data and went on", r.vcpu(0).regs().gpr[Regs.RAX] == DATA_VALUE + 1
                && r.ramValues()[0] == DATA_VALUE + 1 && r.vcpu(0).outcome() == VcpuOutcome.HALTED, "rax " + r.vcpu(0).regs().gpr[Regs.RAX]);
        return res;
    }

    static ScenarioResult poisonStop(Hypervisor hv) {
        ScenarioResult res = new ScenarioResult("poison-stop", hv.name(), byName("poison-stop").description());
        Assembler a = new Assembler(LOAD);
        a.mov(abs(64, 0x500000), 7).hlt();
        FaultPlan plan = new FaultPlan(false, List.of(0x500000L), -1, 0, -1, false, List.of());
        Run r = run(hv, image(a, 1), 1, plan, 0x500000);
        res.check("one EHWPOISON exit (WRITE) at 0x500000", r.faults(0).equals(List.of("EHWPOISON 0x2 0x500000")), String.join(", ", r.faults(0)));
        VcpuResult v = r.vcpu(0);
        res.check("the vCPU stopped with a report naming gpa, flags and errno", v.outcome() == VcpuOutcome.UNRESOLVED_MEMORY_FAULT
                && v.detail().contains("gpa 0x500000") && v.detail().contains("flags 0x2") && v.detail().contains("EHWPOISON"), v.detail());
        res.check("nothing was written in its place", r.ramValues()[0] == 0, "0x500000 = " + r.ramValues()[0]);
        return res;
    }

    // ---------------------------------------------------------------- hypervisor-internal audits

    static ScenarioResult staleData(Hypervisor hv) {
        ScenarioResult res = new ScenarioResult("stale-data", hv.name(), byName("stale-data").description());
        if (!isRef(hv)) {
            return res.notSupported("the hypervisor-side audits", "they are checks inside KVM_RUN (kernel code); on kvm faultline "
                    + "holds the userspace half: memory_fault is read only when KVM_RUN failed with EFAULT/EHWPOISON and exit_reason "
                    + "is 39, any other errno is an error whose exit data is never read (ExitDecoder, ExitDecoderTest)");
        }
        Assembler a = new Assembler(LOAD);
        a.mov(RAX, abs(64, 0x500000)).mov(RAX, abs(64, 0x501000)).hlt();
        GuestImage img = image(a, 1);
        try (BareRef b = new BareRef(img, Caps.VM_TYPE_DEFAULT, true)) {
            b.missing.markPresent(LOAD, 0x2000);
            VcpuExit e1 = b.vcpu.run();
            VcpuExit.MemoryFault f = e1 instanceof VcpuExit.MemoryFault mf ? mf : null;
            res.check("a missing page gives a filled memory-fault exit", f != null && f.gpa() == 0x500000 && f.errno() == Errno.EFAULT,
                    e1.record().toString());
            b.missing.markPresent(0x500000, 0x1000);
            b.vm.enableCap(Caps.FAULTLINE_MEMORY_FAULT_EXIT, MemoryFaultReasons.POISON);
            String bare;
            try {
                bare = "returned " + b.vcpu.run().record();
            } catch (ErrnoException ex) {
                bare = ex.errno() == Errno.EFAULT ? "EFAULT" : ex.getMessage();
            }
            res.check("with the reason opted out, KVM_RUN fails with a bare EFAULT and the last exit is not handed back",
                    bare.equals("EFAULT") && f.gpa() == 0x500000, bare + "; the old exit still says gpa " + hex(f.gpa()));
            b.vm.enableCap(Caps.FAULTLINE_MEMORY_FAULT_EXIT, MemoryFaultReasons.VALID);
            VcpuExit e3 = b.vcpu.run();
            res.check("re-entry resets the exit: the next fault is freshly filled", e3 instanceof VcpuExit.MemoryFault m3 && m3.gpa() == 0x501000,
                    e3.record().toString());
            b.missing.markPresent(0x501000, 0x1000);
            res.check("after resolving, the run ends in HLT, not in the old exit", b.vcpu.run().reason() == ExitReason.HLT, "hlt");

            AtomicReference<Throwable> foreign = new AtomicReference<>();
            Thread t = Thread.ofPlatform().start(() -> {
                try {
                    b.vcpu.fillMemoryFaultFromThisThread(1, 0x500000);
                } catch (Throwable x) {
                    foreign.set(x);
                }
            });
            join(t);
            res.check("a fill from another thread fails loudly", foreign.get() instanceof AssertionError,
                    String.valueOf(foreign.get() == null ? "not detected" : foreign.get().getMessage()));
        }
        try (BareRef b = new BareRef(portImage(), Caps.VM_TYPE_DEFAULT, false)) {
            res.check("a second fill in one run fails loudly", throwsAssertion(() -> b.vcpu.runWithHookAfterExecute(
                    () -> b.vcpu.fillMemoryFaultFromThisThread(2, 0x500000))), "an I/O exit was prepared, then a memory fault tried to replace it");
        }
        try (BareRef b = new BareRef(portImage(), Caps.VM_TYPE_DEFAULT, false)) {
            res.check("memory-fault data with another errno fails loudly", throwsAssertion(() -> b.vcpu.runWithHookAfterExecute(
                    () -> b.vcpu.memoryFault(1, 0x500000, Errno.EINVAL, MemoryFaultReasons.MISSING))), "errno EINVAL");
        }
        try (BareRef b = new BareRef(portImage(), Caps.VM_TYPE_DEFAULT, false)) {
            b.vcpu.forceBareFaultOnNextRun(Errno.EFAULT, MemoryFaultReasons.MISSING);
            res.check("a bare EFAULT where the exit must be filled fails loudly", throwsAssertion(b.vcpu::run), "reason missing enabled");
        }
        return res;
    }

    private static GuestImage portImage() {
        return image(new Assembler(LOAD).mov(EAX, 0).out(0x80, AL).hlt(), 1);
    }

    private static boolean throwsAssertion(Runnable r) {
        try {
            r.run();
            return false;
        } catch (AssertionError e) {
            return true;
        }
    }

    private static void join(Thread t) {
        try {
            t.join();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** Seed 000's check, transcribed: {@code return !(reasons & !valid_flags);} (C's logical not). */
    static boolean seedCheckAccepts(long reasons, long validFlags) {
        return (reasons & (validFlags == 0 ? 1 : 0)) == 0;
    }

    static ScenarioResult optIn(Hypervisor hv) {
        ScenarioResult res = new ScenarioResult("opt-in", hv.name(), byName("opt-in").description());
        long unknown = 1L << 5;
        res.check("seed 000's own check would accept the unknown reason bit 0x20", seedCheckAccepts(unknown, MemoryFaultReasons.VALID),
                "!(0x20 & !0xf) = !(0x20 & 0) = 1");
        try (var vm = hv.createVm(Caps.VM_TYPE_DEFAULT)) {
            long info = vm.checkExtension(Caps.MEMORY_FAULT_INFO);
            res.check("KVM_CAP_MEMORY_FAULT_INFO is advertised", info == 1, "KVM_CHECK_EXTENSION = " + info);
            res.check("enabling KVM_CAP_MEMORY_FAULT_INFO is EINVAL", errnoOf(() -> vm.enableCap(Caps.MEMORY_FAULT_INFO, 1)) == Errno.EINVAL,
                    "KVM_ENABLE_CAP -> " + Errno.name(errnoOf(() -> vm.enableCap(Caps.MEMORY_FAULT_INFO, 1))));
            if (!isRef(hv)) {
                long v = vm.checkExtension(Caps.FAULTLINE_MEMORY_FAULT_EXIT);
                return res.notSupported("the per-reason opt-in", "seed 000's capability was never merged; this kernel answers "
                        + "KVM_CHECK_EXTENSION " + v + " and KVM_ENABLE_CAP " + Errno.name(errnoOf(() -> vm.enableCap(Caps.FAULTLINE_MEMORY_FAULT_EXIT, 1)))
                        + " for it (an unknown capability)");
            }
            res.check("the per-reason capability reports its valid reasons", vm.checkExtension(Caps.FAULTLINE_MEMORY_FAULT_EXIT) == MemoryFaultReasons.VALID,
                    hex(vm.checkExtension(Caps.FAULTLINE_MEMORY_FAULT_EXIT)));
            int e = errnoOf(() -> vm.enableCap(Caps.FAULTLINE_MEMORY_FAULT_EXIT, MemoryFaultReasons.MISSING | unknown));
            res.check("an unknown reason bit is EINVAL (bitwise check (reasons & ~valid) != 0)", e == Errno.EINVAL, "0x22 -> " + Errno.name(e));
            res.check("every known combination is accepted", errnoOf(() -> vm.enableCap(Caps.FAULTLINE_MEMORY_FAULT_EXIT, MemoryFaultReasons.VALID)) == 0
                    && errnoOf(() -> vm.enableCap(Caps.FAULTLINE_MEMORY_FAULT_EXIT, 0)) == 0, "0xf and 0 accepted");
        }
        Assembler a = new Assembler(LOAD);
        a.mov(RAX, abs(64, 0x500000)).hlt();
        FaultPlan without = new FaultPlan(true, List.of(), -1, 0, MemoryFaultReasons.POISON, false, List.of());
        Run r = run(hv, image(a, 1), 1, without);
        res.check("with MISSING left out, a missing page fails KVM_RUN with a bare EFAULT the VMM cannot resolve",
                r.vcpu(0).outcome() == VcpuOutcome.ERROR && r.vcpu(0).detail().contains("EFAULT") && r.faults(0).isEmpty(), r.vcpu(0).detail());
        FaultPlan with = new FaultPlan(true, List.of(), -1, 0, MemoryFaultReasons.MISSING, false, List.of());
        Run r2 = run(hv, image(a, 1), 1, with);
        res.check("with MISSING opted in, the same guest gets filled exits and finishes", r2.report().clean() && r2.faults(0).size() == 2,
                String.join(", ", r2.faults(0)));
        return res;
    }

    private static int errnoOf(Runnable r) {
        try {
            r.run();
            return 0;
        } catch (ErrnoException e) {
            return e.errno();
        }
    }

    /** A ref VM booted straight, without the VMM: for the audits the VMM never sees. */
    static final class BareRef implements AutoCloseable {
        final HostMemory ram = HostMemory.anonymous(RAM);
        final RefVm vm;
        final RefVcpu vcpu;
        UserfaultBitmap missing;

        BareRef(GuestImage img, int type, boolean exitOnMissing) {
            vm = (RefVm) new RefHypervisor().createVm(type);
            long main = BootProtocol.IMAGE_MIN_GPA;
            vm.setMemorySlot(BootSetup.lowSlot(ram, 0));
            MemorySlot slot = BootSetup.mainSlot(ram, 0);
            if (exitOnMissing) {
                missing = UserfaultBitmap.allMissing(main, RAM - main);
                missing.markPresent(LOAD, (img.size() + 0xfffL) & ~0xfffL);
                slot = slot.withUserfault(missing);
            }
            vm.setMemorySlot(slot);
            img.installWithSystemTables(ram.segment(), RAM);
            vcpu = (RefVcpu) vm.createVcpu(0);
            BootSetup.boot(vcpu, LOAD, 0, 1);
        }

        @Override
        public void close() {
            vm.close();
            ram.close();
        }
    }
}
