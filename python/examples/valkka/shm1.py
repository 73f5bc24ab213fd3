"""valkka tutorial 4, "Using shared memory and forked resources": only the import differs
(and shorter naps; the shared memory's name carries the pid so that runs never collide)."""
import os
import time
import logging
import numpy as np
from parafork.valkka import MessageProcess, MessageObject, \
    EventGroup, SyncIndex
from multiprocessing import shared_memory

class MyProcess(MessageProcess):

    def __init__(self, name):
        super().__init__(name)
        self.eg = EventGroup(10)
        self.shmem_name = "my-shm-1-%d" % os.getpid()
        # create a dummy model array;
        self.model = np.zeros((100,100), dtype=float)
        # create frontend-side shared memory array:
        self.shmem = shared_memory.SharedMemory(
            name=self.shmem_name, create=True, size=self.model.nbytes
        )
        self.array = np.ndarray(
            self.model.shape, dtype=self.model.dtype, buffer=self.shmem.buf
        )
        self.array[:,:] = 1.0

    def __del__(self):
        self.shmem.close()

    def preRun__(self):
        self.logger.info("preRun__ : ")
        # create backend-side shared memory array:
        self.shmem__ = shared_memory.SharedMemory(
            name=self.shmem_name, create=False, size=self.model.nbytes
        )
        self.array__ = np.ndarray(
            self.model.shape, dtype=self.model.dtype, buffer=self.shmem__.buf
        )

    def postRun__(self):
        self.logger.info("postRun__ : ")
        # release backend-side shared memory array:
        self.shmem__.unlink()

    def c__readWrite(self, sync_index: int =None):
        self.logger.info("c__readWrite: will change array values from %s to %s",
            self.array__[0,0], 3.0)
        self.array__[:,:] = 3.0
        self.logger.info("c__readWrite: ..did that!")
        self.eg.set(sync_index) # tell frontend that it's done

    def readWrite(self):
        self.logger.info("readWrite : calling backend")
        with SyncIndex(self.eg) as i:
            self.sendMessageToBack(MessageObject(
                "readWrite",
                sync_index = i
            ))
        self.logger.info("readWrite: array values now %s", self.array[0,0])

p = MyProcess(name="my-process")
p.formatLogger()
p.start()
time.sleep(0.1)
p.readWrite()
assert p.array[0, 0] == 3.0
p.stop()
