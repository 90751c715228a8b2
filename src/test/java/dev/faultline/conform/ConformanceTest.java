package dev.faultline.conform;

import static dev.faultline.ref.x86.Op.SH_SHL;
import static dev.faultline.ref.x86.Op.SUB_ADD;
import static dev.faultline.ref.x86.Op.SUB_XOR;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.faultline.hv.GuestMemfd;
import dev.faultline.hv.Hypervisor;
import dev.faultline.hv.MemorySlot;
import dev.faultline.hv.Regs;
import dev.faultline.hv.Sregs;
import dev.faultline.hv.Vcpu;
import dev.faultline.hv.VcpuExit;
import dev.faultline.hv.Vm;
import dev.faultline.kvm.HostCapabilities;
import dev.faultline.kvm.KvmHypervisor;
import dev.faultline.guest.asm.Reg;
import dev.faultline.ref.RefHypervisor;
import dev.faultline.ref.x86.CpuState;
import dev.faultline.ref.x86.FlagEffect;
import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.function.Consumer;
import org.junit.jupiter.api.Test;

class ConformanceTest {

    @Test
    void shouldGenerateTheSameProgramForTheSameSeedAndIndex() {
        Program a = new ProgramGenerator(42, 7).generate(30);
        Program b = new ProgramGenerator(42, 7).generate(30);
        Program c = new ProgramGenerator(42, 8).generate(30);
        assertEquals(a.listing(), b.listing());
        assertArrayEquals(a.image().bytes(), b.image().bytes());
        assertFalse(a.listing().equals(c.listing()), "another index gives another program");
    }

    @Test
    void shouldAgreeWithItselfOnTheRefBackend() {
        try (Hypervisor ref = new RefHypervisor(); Hypervisor ref2 = new RefHypervisor()) {
            Conformance.Result r = new Conformance(ref, ref2).run(3, 20, 40, false, true, null);
            assertEquals(List.of(), r.mismatches());
            assertEquals(20, r.programs());
        }
    }

    @Test
    void shouldFindAndShrinkTheDifferenceOfABackendThatGetsOneRegisterWrong() {
        // A backend that reports r13 off by one whenever its bit 2 is set: a realistic, data-dependent bug.
        Consumer<Regs> r13Bug = r -> { if ((r.gpr[Regs.R13] & 4) != 0) r.gpr[Regs.R13]++; };
        try (Hypervisor ref = new RefHypervisor(); Hypervisor broken = new Twisted(new RefHypervisor(), "r13bug", r13Bug)) {
            Conformance c = new Conformance(ref, broken);
            Conformance.Result r = c.run(5, 20, 40, false, true, null);
            assertFalse(r.mismatches().isEmpty(), "a wrong register must be noticed");
            Conformance.Mismatch m = r.mismatches().get(0);
            assertTrue(m.difference().contains("r13"), m.difference());
            assertTrue(m.shrunk().size() < m.listing().size(), "shrunk " + m.shrunk().size() + " lines from " + m.listing().size());
            assertNotNull(m.shrunkDifference(), "the shrunk program still shows the difference");
            assertTrue(m.shrunkDifference().contains("r13"), m.shrunkDifference());
            assertFalse(String.join("\n", m.shrunk()).contains("not a valid program"), "a shrunk program reads no undefined flag");
        }
    }

    @Test
    void shouldIgnoreTheFlagsUndefinedAtTheEndOfAProgramAndOnlyThose() {
        // A backend whose AF is always the opposite: after div AF is undefined (not compared), after add it is defined.
        try (Hypervisor ref = new RefHypervisor(); Hypervisor flipped = new Twisted(new RefHypervisor(), "af-flipped", r -> r.rflags ^= CpuState.AF)) {
            Conformance c = new Conformance(ref, flipped);
            Op div = new Op("div r14 (r14 = 7)", a -> a.xor(Reg.EDX, Reg.EDX).mov(Reg.R14D, 7).div(Reg.R14),
                    FlagFlow.instructions("div r14", FlagEffect.alu(SUB_XOR), FlagEffect.NONE, FlagEffect.divide()));
            Op add = new Op("add eax, ebx", a -> a.add(Reg.EAX, Reg.EBX), FlagFlow.instructions("add eax, ebx", FlagEffect.alu(SUB_ADD)));
            Op shl = new Op("shl eax, 3", a -> a.shl(Reg.EAX, 3), FlagFlow.instructions("shl eax, 3", FlagEffect.shift(SH_SHL, 4, 3)));
            long[] init = new long[16];
            assertEquals(null, c.compare(new Program(0, 0, init, List.of(add, div))));
            assertEquals(null, c.compare(new Program(0, 0, init, List.of(add, shl))), "shifts leave AF undefined");
            String diff = c.compare(new Program(0, 0, init, List.of(div, add)));
            assertNotNull(diff, "AF is defined after add: a wrong AF must be noticed");
            assertTrue(diff.contains("register rflags"), diff);
        }
    }

    @Test
    void shouldFindNoDifferenceBetweenKvmAndRefOnRandomProgramsAndWorkloads() {
        HostCapabilities caps = HostCapabilities.probe();
        assumeTrue(caps.kvmAvailable(), () -> "skipped: /dev/kvm is not usable: " + caps.kvmReason());
        try (Hypervisor kvm = KvmHypervisor.open(); Hypervisor ref = new RefHypervisor()) {
            Conformance.Result r = new Conformance(kvm, ref).run(11, 60, 40, true, false, null);
            assertEquals(List.of(), r.mismatches());
            assertEquals(14, r.workloads());
        }
    }

    /** Delegates to a real backend, but {@code twist} changes the registers its vCPUs report. */
    private record Twisted(Hypervisor inner, String name, Consumer<Regs> twist) implements Hypervisor {
        public String name() { return name; }
        public int apiVersion() { return inner.apiVersion(); }
        public long checkExtension(int cap) { return inner.checkExtension(cap); }
        public void close() { inner.close(); }
        public Vm createVm(int type) {
            Vm vm = inner.createVm(type);
            Hypervisor self = this;
            return new Vm() {
                public Hypervisor hypervisor() { return self; }
                public int type() { return vm.type(); }
                public long checkExtension(int cap) { return vm.checkExtension(cap); }
                public void enableCap(int cap, long... args) { vm.enableCap(cap, args); }
                public void setMemorySlot(MemorySlot slot) { vm.setMemorySlot(slot); }
                public List<MemorySlot> memorySlots() { return vm.memorySlots(); }
                public GuestMemfd createGuestMemfd(long size, long flags) { return vm.createGuestMemfd(size, flags); }
                public void setMemoryAttributes(long gpa, long size, long attributes) { vm.setMemoryAttributes(gpa, size, attributes); }
                public void getDirtyLog(int slot, MemorySegment bitmap) { vm.getDirtyLog(slot, bitmap); }
                public void close() { vm.close(); }
                public Vcpu createVcpu(int id) {
                    Vcpu v = vm.createVcpu(id);
                    Vm outer = this;
                    return new Vcpu() {
                        public int id() { return v.id(); }
                        public Vm vm() { return outer; }
                        public Regs getRegs(Regs into) {
                            v.getRegs(into);
                            twist.accept(into);
                            return into;
                        }
                        public void setRegs(Regs regs) { v.setRegs(regs); }
                        public Sregs getSregs() { return v.getSregs(); }
                        public void setSregs(Sregs sregs) { v.setSregs(sregs); }
                        public VcpuExit run() { return v.run(); }
                        public void kick() { v.kick(); }
                        public void close() { v.close(); }
                    };
                }
            };
        }
    }
}
