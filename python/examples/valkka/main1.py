"""valkka tutorial Part II, "the manager of many workers": only the import differs, plus
shorter naps and a "test" mode that runs for one second (the default here, so that it runs as
a test; "main" runs until Ctrl-C as in the tutorial)."""
import os
import time, sys
import numpy as np
import logging
from random import randint
from multiprocessing import shared_memory
from parafork.valkka import MessageProcess, MessageObject, \
    MainContext, safe_select


class WorkerProcess(MessageProcess):

    def __init__(self, name):
        super().__init__(name)
        self.shmem_name = "shm-%d-%s" % (os.getpid(), self.name)
        # create a dummy model array;
        self.model = np.zeros((100,100), dtype=float)
        # create frontend-side shared memory array:
        self.shmem = shared_memory.SharedMemory(
            name=self.shmem_name, create=True, size=self.model.nbytes
        )
        self.array = np.ndarray(
            self.model.shape, dtype=self.model.dtype, buffer=self.shmem.buf
        )
        self.array[:,:] = 0.0

    def __del__(self):
        self.shmem.close()

    # Backend methods
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

    def c__doWork(self):
        self.logger.info("c__doWork: will change array values from %s to %s",
            self.array__[0,0], 3.0)
        r = randint(1,5)
        self.array__[:,:] = r
        time.sleep(r * 0.05) # wait random time
        self.logger.info("c__doWork: ..did that!")
        # send message when ready
        self.send_out__(MessageObject(
            "ready"
        ))

    # Frontend methods
    def doWork(self):
        self.logger.info("readWrite : calling backend")
        self.sendMessageToBack(MessageObject(
            "doWork"
        ))

    def getArray(self):
        return self.array


class Manager(MainContext):

    def __init__(self, n_workers = 10):
        self.n_workers = n_workers
        self.timeout = 2.0
        self.handled = 0
        super().__init__()

    def startProcesses(self):
        self.logger.debug("startProcesses:")
        self.cache = [] # all multiprocesses
        self.avail_cache = [] # available multiprocesses for work
        self.process_by_pipe = {} # ditto
        self.read_pipes = [self.aux_pipe_read] # pipes / file descriptors to listen to
        for i in range(self.n_workers):
            p = WorkerProcess(name="worker-"+str(i))
            p.ignoreSIGINT()
            pipe = p.getPipe()
            self.cache.append(p)
            self.avail_cache.append(p)
            self.process_by_pipe[pipe] = p
            self.read_pipes.append(pipe)
        self.logger.info("startProcesses: starting multiprocesses")
        # forks!
        for p in self.cache:
            p.start()
        self.logger.info("startProcesses: all multiprocesses running")

    def startThreads(self):
        self.logger.debug("startThreads:")
        pass # no threads in this app

    def close(self):
        self.logger.debug("close: stopping processes")
        for p in self.cache:
            p.requestStop()
        for p in self.cache:
            p.waitStop()
        self.logger.debug("close: processes stopped")
        self.closed = True

    def __call__(self):
        p1 = self.avail_cache.pop(0)
        p2 = self.avail_cache.pop(0)
        p3 = self.avail_cache.pop(0)
        p1.doWork()
        p2.doWork()
        p3.doWork()
        self.loop = True
        self.logger.debug("starting main loop")
        while self.loop:
            try:
                reads, writes, others = safe_select(
                    self.read_pipes, [], [], timeout=self.timeout)
            except KeyboardInterrupt:
                self.logger.warning("SIGTERM or CTRL-C: will exit asap")
                self.loop = False
                continue
            if len(reads) < 1: # reading operation timeout
                self.logger.debug("still alive")
                continue
            for pipe in reads:
                if pipe is self.aux_pipe_read:
                    self.logger.critical("debug mode exit")
                    self.loop = False
                    continue
                else:
                    try:
                        p = self.process_by_pipe[pipe]
                    except KeyError:
                        self.logger.critical("unknown pipe %s", p)
                        continue
                    obj = pipe.recv()
                    self.logger.debug("got message %s", obj)
                    self.handleMessage__(p, obj)
        self.close()
        self.logger.debug("bye!")

    def handleMessage__(self, p: WorkerProcess, msg: MessageObject):
        # read the sharedmem:
        vals=p.getArray()[0, 0:5]
        self.logger.info("handleMessage__ : subprocess %s returned %s with values %s",
            p, msg(), vals)
        self.handled += 1
        # return the process back to cache
        self.avail_cache.append(p)
        # take a new process from the cache
        try:
            p_ = self.avail_cache.pop(0)
        except IndexError:
            self.logger.fatal("handleMessage__ : no more processes available!")
        else:
            # tell it to do some work
            p_.doWork()


def main():
    Manager.formatLogger(logging.DEBUG) # of course in a real app, in some other way
    WorkerProcess.formatLogger(logging.DEBUG) # of course in a real app, in some other way
    manager = Manager(n_workers=5)
    manager()


def test():
    Manager.formatLogger(logging.DEBUG)
    WorkerProcess.formatLogger(logging.DEBUG)
    manager = Manager(n_workers=5)
    manager.runAsThread()
    print("running manager for 1 sec")
    time.sleep(1)
    # .. or alternative, interact with the manager somehow
    # as it runs in the background thread
    print("stopping manager")
    manager.stopThread()
    assert manager.handled > 3 and manager.closed
    print("bye!")


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "main":
        main()
    else:
        test()
