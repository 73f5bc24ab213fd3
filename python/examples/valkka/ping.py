"""valkka tutorial 1, "Send message to a forked process": only the import differs."""
import time
from parafork.valkka import MessageProcess, MessageObject

class MyProcess(MessageProcess):

    def c__ping(self, parameter=None):
        print("Regards from other side of the fork!  Got parameter", parameter)

    def ping(self, parameter=None):
        self.sendMessageToBack(MessageObject(
            "ping", parameter=parameter))

p = MyProcess(name="my-process")
p.start()
time.sleep(0.1)
p.ping(parameter="gotcha!")
time.sleep(0.1)
p.stop()
