package dev.faultline.ref;

import static dev.faultline.hv.MemoryFaultFlags.PRIVATE;
import static dev.faultline.hv.MemoryFaultFlags.READ;
import static dev.faultline.hv.MemoryFaultFlags.WRITE;
import static dev.faultline.ref.FaultVm.efault;
import static org.junit.jupiter.api.Assertions.*;

import dev.faultline.hv.Caps;
import dev.faultline.hv.ExitReason;
import dev.faultline.hv.PrivateMemory;
import dev.faultline.hv.Regs;
import dev.faultline.hv.VcpuExit;
import dev.faultline.ref.FaultVm.Fault;
import dev.faultline.sys.Errno;
import dev.faultline.sys.ErrnoException;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * Private and shared memory on a VM_TYPE_SW_PROTECTED VM: attributes, the encryption bit (51) in the
 * guest's own page tables, implicit conversion exits and KVM_HC_MAP_GPA_RANGE.
 */
class RefPrivateMemoryTest {
    /**
     * Guest prologue: a new PML4 at 0x300000 keeps the identity map in entry 0 and maps
     * va 0x8000000000 + i * 4 KiB through PDPT 0x301000, PD 0x302000, PT 0x303000 (all shared) to
     * gpa 0x600000 + i * 4 KiB, with the encryption bit in PT entries 0 and 2 (private) and not in 1.
     */
    static final String ALIAS_TABLES = """
            mov 0x10000, %rax
            mov %rax, 0x300000
            movq $0x301003, 0x300008
            movq $0x302003, 0x301000
            movq $0x303003, 0x302000
            movabs $0x0008000000600003, %rax
            mov %rax, 0x303000
            movq $0x601003, 0x303008
            movabs $0x0008000000602003, %rax
            mov %rax, 0x303010
            mov $0x300000, %eax
            mov %rax, %cr3
            movabs $0x8000000000, %rbx
            """;

    private static void convert(FaultVm m, VcpuExit.MemoryFault f) {
        m.vm.setMemoryAttributes(f.gpa(), f.size(), f.isPrivate() ? Caps.MEMORY_ATTRIBUTE_PRIVATE : 0);
    }

    @Test
    void shouldKeepPrivateStoresInGuestMemfdAndExitOnEveryMismatchWithThePrivateFlagOfTheAccess() {
        byte[] img = Toolchain.assemble(ALIAS_TABLES + """
                movq $0x1111, (%rbx)         # private store to a private page: no exit
                movq $0x2222, 0x601000       # shared store to a private page: implicit conversion to shared
                mov 0x2000(%rbx), %rcx       # private load from a shared page: implicit conversion to private
                mov (%rbx), %rdx             # private load: sees the private store
                hlt
                """);
        try (FaultVm m = new FaultVm(img, 1, Caps.VM_TYPE_SW_PROTECTED, false)) {
            m.vm.setMemoryAttributes(0x600000, 0x2000, Caps.MEMORY_ATTRIBUTE_PRIVATE);
            m.write64(0x602000, 0x5555);     // shared data left behind when 0x602000 becomes private
            List<Fault> faults = RefMemoryFaultTest.runResolving(m.vcpu(), f -> convert(m, f));
            assertEquals(List.of(efault(WRITE, 0x601000), efault(READ | PRIVATE, 0x602000)), faults);
            Regs r = m.vcpu().getRegs();
            assertEquals(0x1111, r.gpr[Regs.RDX]);
            assertEquals(0, r.gpr[Regs.RCX], "a page converted to private starts empty in guest_memfd");
            assertEquals(0x1111, m.readPrivate64(0x600000));
            assertEquals(0, m.read64(0x600000), "the private store never reached the shared mapping");
            assertEquals(0x2222, m.read64(0x601000));
        }
    }

    @Test
    void shouldExitForMapGpaRangeAndDiscardThePrivateSideOnConversionToShared() {
        byte[] img = Toolchain.assemble(ALIAS_TABLES + """
                movq $0x1111, (%rbx)
                mov $12, %eax                # KVM_HC_MAP_GPA_RANGE
                mov %rbx, %rsi
                mov $0x600000, %ebx
                mov $1, %ecx
                xor %edx, %edx               # decrypted: to shared
                vmcall
                mov %rax, %r8
                mov $12, %eax
                mov $0x600001, %ebx          # misaligned: -KVM_EINVAL without an exit
                vmmcall
                mov %rax, %r9
                mov $99, %eax                # unknown hypercall: -KVM_ENOSYS
                vmcall
                mov %rax, %r10
                mov (%rsi), %rdx             # private load of a page now shared: exit, convert back
                hlt
                """);
        try (FaultVm m = new FaultVm(img, 1, Caps.VM_TYPE_SW_PROTECTED, false)) {
            m.vm.enableCap(Caps.EXIT_HYPERCALL, PrivateMemory.EXIT_HYPERCALL_MAP_GPA_RANGE);
            m.vm.setMemoryAttributes(0x600000, 0x1000, Caps.MEMORY_ATTRIBUTE_PRIVATE);
            RefVcpu v = m.vcpu();
            VcpuExit.Hypercall hc = (VcpuExit.Hypercall) v.run();
            assertEquals(VcpuExit.Hypercall.KVM_HC_MAP_GPA_RANGE, hc.nr());
            assertEquals(List.of(0x600000L, 1L, 0L), List.of(hc.arg(0), hc.arg(1), hc.arg(2)));
            assertEquals(PrivateMemory.EXIT_HYPERCALL_LONG_MODE, hc.flags());
            m.vm.setMemoryAttributes(hc.arg(0), hc.arg(1) << 12, (hc.arg(2) & PrivateMemory.MAP_GPA_RANGE_ENCRYPTED) != 0
                    ? Caps.MEMORY_ATTRIBUTE_PRIVATE : 0);
            hc.complete(0);
            List<Fault> faults = RefMemoryFaultTest.runResolving(v, f -> convert(m, f));
            assertEquals(List.of(efault(READ | PRIVATE, 0x600000)), faults);
            Regs r = v.getRegs();
            assertEquals(0, r.gpr[Regs.R8], "userspace's result is the guest's RAX");
            assertEquals(-22, r.gpr[Regs.R9]);
            assertEquals(-1000, r.gpr[Regs.R10]);
            assertEquals(0, r.gpr[Regs.RDX], "converting to shared discarded the private 0x1111");
        }
    }

    @Test
    void shouldReturnEnosysForMapGpaRangeUntilUserspaceEnablesTheHypercallExit() {
        byte[] img = Toolchain.assemble("""
                mov $12, %eax
                mov $0x600000, %ebx
                mov $1, %ecx
                xor %edx, %edx
                vmcall
                hlt
                """);
        try (FaultVm m = new FaultVm(img, 1, Caps.VM_TYPE_SW_PROTECTED, false)) {
            assertEquals(ExitReason.HLT, m.vcpu().run().reason());
            assertEquals(-1000, m.vcpu().getRegs().gpr[Regs.RAX]);
            assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> m.vm.enableCap(Caps.EXIT_HYPERCALL, 1L << 3)).errno());
        }
    }

    @Test
    void shouldCheckMemoryAttributesLikeUpstream() {
        try (FaultVm m = new FaultVm(Toolchain.assemble("hlt"), 1, Caps.VM_TYPE_SW_PROTECTED, false)) {
            long p = Caps.MEMORY_ATTRIBUTE_PRIVATE;
            for (long[] bad : new long[][] {{0x600000, 0x1000, 1}, {0x600000, 0x1000, p | (1L << 4)}, {0x600000, 0, p},
                    {0x600800, 0x1000, p}, {0x600000, 0x800, p}, {-0x1000L, 0x2000, p}}) {
                ErrnoException e = assertThrows(ErrnoException.class, () -> m.vm.setMemoryAttributes(bad[0], bad[1], bad[2]),
                        () -> java.util.Arrays.toString(bad));
                assertEquals(Errno.EINVAL, e.errno());
            }
            m.vm.setMemoryAttributes(0x40000000L, 0x1000, p);   // outside every memslot: gfn attributes, accepted
            assertEquals(p, m.vm.checkExtension(Caps.MEMORY_ATTRIBUTES));
        }
        try (FaultVm d = new FaultVm(Toolchain.assemble("hlt"), 1, Caps.VM_TYPE_DEFAULT, false)) {
            assertEquals(0, d.vm.checkExtension(Caps.MEMORY_ATTRIBUTES));
            assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                    () -> d.vm.setMemoryAttributes(0x600000, 0x1000, Caps.MEMORY_ATTRIBUTE_PRIVATE)).errno());
            assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> d.vm.createGuestMemfd(0x1000, 0)).errno());
        }
    }

    @Test
    void shouldAdvertiseTheEncryptionBitInCpuidLeaf8000001f() {
        byte[] img = Toolchain.assemble("""
                mov $0x80000000, %eax
                cpuid
                mov %rax, %r8
                mov $0x8000001f, %eax
                cpuid
                hlt
                """);
        try (FaultVm m = new FaultVm(img, 1, Caps.VM_TYPE_SW_PROTECTED, false)) {
            assertEquals(ExitReason.HLT, m.vcpu().run().reason());
            Regs r = m.vcpu().getRegs();
            assertEquals(0x8000001fL, r.gpr[Regs.R8]);
            assertEquals(2, r.gpr[Regs.RAX], "EAX bit 1: SEV");
            assertEquals(PrivateMemory.ENCRYPTION_BIT, r.gpr[Regs.RBX] & 0x3f);
        }
    }

    @Test
    void shouldConvertPagesTouchedBySeveralVcpusOncePerMismatch() throws Exception {
        // vCPU i stores privately to page 0x600000 + 2i*4K (shared at start): one conversion exit each.
        byte[] img = Toolchain.assemble("""
                mov %rdi, %rax
                shl $14, %rax                  # 16 KiB of page tables per vCPU
                lea 0x700000(%rax), %rsi       # per-vCPU PT page
                mov %rdi, %rcx
                shl $13, %rcx
                add $0x600000, %rcx
                movabs $0x0008000000000003, %rdx
                or %rdx, %rcx
                mov %rcx, (%rsi)               # PT[0] = private page
                lea 0x701000(%rax), %r8        # PD
                lea 3(%rsi), %rdx
                mov %rdx, (%r8)
                lea 0x702000(%rax), %r9        # PDPT
                lea 3(%r8), %rdx
                mov %rdx, (%r9)
                lea 0x703000(%rax), %r10       # PML4
                mov 0x10000, %rdx
                mov %rdx, (%r10)
                lea 3(%r9), %rdx
                mov %rdx, 8(%r10)
                mov %r10, %cr3
                movabs $0x8000000000, %rbx
                lea 0x100(%rdi), %rdx
                mov %rdx, (%rbx)
                hlt
                """);
        int n = 3;
        try (FaultVm m = new FaultVm(img, n, Caps.VM_TYPE_SW_PROTECTED, false)) {
            List<List<Fault>> per = new ArrayList<>();
            List<Thread> ts = new ArrayList<>();
            for (int i = 0; i < n; i++) {
                List<Fault> mine = new ArrayList<>();
                per.add(mine);
                RefVcpu v = m.vcpus.get(i);
                ts.add(Thread.ofPlatform().start(() -> mine.addAll(RefMemoryFaultTest.runResolving(v, f -> convert(m, f)))));
            }
            for (Thread t : ts) t.join();
            for (int i = 0; i < n; i++) {
                long page = 0x600000 + 0x2000L * i;
                assertEquals(List.of(efault(WRITE | PRIVATE, page)), per.get(i));
                assertEquals(0x100 + i, m.readPrivate64(page));
                assertEquals(0, m.read64(page));
            }
        }
    }
}
