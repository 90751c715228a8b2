package dev.faultline.ref;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.faultline.guest.BootProtocol;
import dev.faultline.guest.GuestImage;
import dev.faultline.guest.asm.Assembler;
import dev.faultline.guest.asm.Label;
import dev.faultline.guest.asm.Mem;
import dev.faultline.guest.asm.Reg;
import dev.faultline.hv.MemslotFlags;
import dev.faultline.vmm.Machine;
import dev.faultline.vmm.MachineSpec;
import dev.faultline.vmm.MemoryFaultHandler;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.time.Duration;
import org.junit.jupiter.api.Test;

/**
 * The pre-copy invariant: copy every page the dirty log names after each harvest, pause, harvest once
 * more, copy again, and the copy equals RAM. A write made after a harvest returned must show in the
 * next one (KVM write-protects and flushes every vCPU's TLB before KVM_GET_DIRTY_LOG returns).
 */
class RefDirtyLogTest {
    private static final long MEM = 8L << 20;
    private static final long DATA = 0x400000;
    private static final int PAGES = 64;

    /** Two vCPUs that store an ever-growing counter into every page of the data area, forever. */
    private static GuestImage writer() {
        Assembler a = new Assembler(BootProtocol.DEFAULT_LOAD_GPA);
        Label top = a.newLabel(), next = a.newLabel();
        a.mov(Reg.RAX, Reg.RDI);                 // vCPU index seeds the counter
        a.bind(top);
        a.movabs(Reg.RBX, DATA);
        a.mov(Reg.ECX, PAGES);
        a.bind(next);
        a.mov(Mem.m64(Reg.RBX, Reg.RDI, 8, 0), Reg.RAX);   // each vCPU its own word in every page
        a.add(Reg.RAX, 2);
        a.add(Reg.RBX, 4096);
        a.dec(Reg.ECX);
        a.jnz(next);
        a.jmp(top);
        byte[] code = a.assemble();
        return GuestImage.of(code, BootProtocol.DEFAULT_LOAD_GPA, BootProtocol.DEFAULT_LOAD_GPA);
    }

    @Test
    void shouldNeverLoseAWriteBetweenTwoDirtyLogHarvests() {
        MachineSpec spec = MachineSpec.of(MEM, 2, writer()).withMainSlot(MemslotFlags.LOG_DIRTY_PAGES, MemoryFaultHandler.NONE)
                .withExitLogLimit(0).withTimeout(Duration.ofSeconds(60));
        try (RefHypervisor hv = new RefHypervisor(); Machine m = new Machine(hv, spec); Arena arena = Arena.ofConfined()) {
            MemorySegment ram = m.ram().segment();
            long mainPages = (MEM - BootProtocol.IMAGE_MIN_GPA) / 4096;
            MemorySegment bitmap = arena.allocate((mainPages + 63) / 64 * 8);
            MemorySegment copy = arena.allocate(MEM);
            copy.copyFrom(ram);
            m.vm().getDirtyLog(BootProtocol.SLOT_MAIN, bitmap);
            Machine.Execution run = m.start();
            long waitUntil = System.nanoTime() + 10_000_000_000L;
            while ((ram.get(ValueLayout.JAVA_LONG, DATA + 4096L * (PAGES - 1)) == 0
                    || ram.get(ValueLayout.JAVA_LONG, DATA + 4096L * (PAGES - 1) + 8) == 0) && System.nanoTime() < waitUntil) {
                Thread.onSpinWait();
            }
            // a number of harvests that race the writers, not a time: a busy host makes them slower, not fewer
            int harvestsWithData = 0;
            long end = System.nanoTime() + 30_000_000_000L;
            while (harvestsWithData < 50 && System.nanoTime() < end) {
                harvestsWithData += copyDirty(m, bitmap, ram, copy) > 0 ? 1 : 0;
            }
            run.pause(Duration.ofSeconds(10));
            copyDirty(m, bitmap, ram, copy);
            run.stop("test over");
            run.await();
            assertEquals(50, harvestsWithData, "the guest kept writing while the host harvested (" + harvestsWithData + " harvests named pages)");
            for (int p = 0; p < PAGES; p++) {
                long gpa = DATA + p * 4096L;
                for (int v = 0; v < 2; v++) {
                    assertEquals(ram.get(ValueLayout.JAVA_LONG, gpa + 8L * v), copy.get(ValueLayout.JAVA_LONG, gpa + 8L * v),
                            "vCPU " + v + "'s word in page 0x" + Long.toHexString(gpa) + ": a write the dirty log never named");
                }
            }
        }
    }

    /** One harvest of the main slot, copying each page it names; returns how many it named. */
    private static int copyDirty(Machine m, MemorySegment bitmap, MemorySegment ram, MemorySegment copy) {
        m.vm().getDirtyLog(BootProtocol.SLOT_MAIN, bitmap);
        int named = 0;
        for (long w = 0; w < bitmap.byteSize() / 8; w++) {
            long bits = bitmap.get(ValueLayout.JAVA_LONG, 8 * w);
            while (bits != 0) {
                int b = Long.numberOfTrailingZeros(bits);
                bits &= bits - 1;
                long gpa = BootProtocol.IMAGE_MIN_GPA + (w * 64 + b) * 4096;
                MemorySegment.copy(ram, gpa, copy, gpa, 4096);
                named++;
            }
        }
        return named;
    }
}
