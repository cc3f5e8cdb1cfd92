# Runs at the soft reset that `app:` ends with.
import wthpkg

print("wth-app main ran:", wthpkg.greet("scenario"))
