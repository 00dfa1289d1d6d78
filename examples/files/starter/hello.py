print("hello from the starter files")
