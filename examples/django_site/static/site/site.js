console.log("upclient example");
